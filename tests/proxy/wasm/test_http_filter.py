"""Wasm HTTP filters in the connection manager, over real sockets and a real upstream."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy
from tests.proxy.wasm.filters import ROUTER, build_c, sdk_filter, wasm_filter


async def test_a_c_filter_reads_and_edits_headers_both_ways(c_filters: Path) -> None:
    filt = wasm_filter(build_c("headers", c_filters), name="hdrs", configuration="cfg")
    listener = http_listener(http_filters=[filt, ROUTER])
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("http")
        async with httpx.AsyncClient() as client:
            response = await client.get(
                f"http://127.0.0.1:{port}/some/path?q=1",
                headers={"x-remove-me": "1", "x-replace-me": "a"},
            )
        assert response.status_code == 200
        assert response.headers["x-seen-path"] == "/some/path?q=1"
        assert response.headers["x-plugin-name"] == "hdrs"
        assert response.headers["x-request-path"] == "/some/path?q=1"
        assert response.headers["x-missing-property"] == "1"
        statuses = response.headers["x-statuses"]
        assert "missing=1 removed=0 removed_missing=0 replaced=0" in statuses
        assert "bad_map=2 bad_ptr=6" in statuses
        assert response.headers["x-refused"] == "crlf=2 bad_name=2 bad_status=2"
        assert "x-injected" not in response.headers


async def test_the_sdk_add_header_filter(tmp_path: Path) -> None:
    filt = wasm_filter(sdk_filter("add_header"), configuration="hello from config")
    listener = http_listener(http_filters=[filt, ROUTER])
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("http")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/echo")
        assert response.status_code == 200
        assert response.headers["x-wasm-filter"] == "hello from config"
