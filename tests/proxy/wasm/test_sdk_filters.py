"""The AssemblyScript SDK's filters (examples/proxy-wasm), configured as Envoy configures them,
in front of a real upstream: every behaviour each filter's README row promises."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from remora.proxy.server import ProxyServer
from tests.proxy.harness import (
    admin_get,
    bootstrap,
    cluster,
    demo_upstreams,
    http_listener,
    running_proxy,
    stat_value,
)
from tests.proxy.wasm.filters import ROUTER, sdk_filter, wasm_filter


async def _get(proxy: ProxyServer, path: str = "/echo", **kwargs: Any) -> httpx.Response:
    port = proxy.listener_port("http")
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(
            kwargs.pop("method", "GET"), f"http://127.0.0.1:{port}{path}", **kwargs
        )


def _config(port: int, *filters: dict[str, Any], extra: list[dict[str, Any]] = ()) -> Any:  # type: ignore[assignment]
    listener = http_listener(http_filters=[*filters, ROUTER])
    return bootstrap([listener], [cluster("backend", [port]), *extra])


async def test_add_header_both_ways_and_its_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="remora.proxy.wasm")
    filt = wasm_filter(sdk_filter("add_header"), name="adder", configuration="v1\n")
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        response = await _get(proxy)
        assert response.status_code == 200
        # A YAML `|` block's trailing newline is part of the configuration the filter sees;
        # a field value cannot carry a line feed, so the host refused that header (the
        # request itself goes on).
        assert "x-wasm-filter" not in response.headers
        assert response.json()["headers"]["x-wasm-request"] == "seen"
    text = caplog.text
    assert "wasm log adder: add_header: vm started" in text
    assert "add_header: configured with v1\n" in text


async def test_auth_admits_the_key_and_answers_403_otherwise() -> None:
    filt = wasm_filter(sdk_filter("auth"), configuration="s3cret")
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        allowed = await _get(proxy, headers={"x-api-key": "s3cret"})
        assert allowed.status_code == 200
        denied = await _get(proxy, headers={"x-api-key": "wrong"})
        assert denied.status_code == 403
        assert denied.text == "denied by wasm\n"
        assert denied.headers["x-denied-by"] == "auth"
        missing = await _get(proxy)
        assert missing.status_code == 403
        stats = await admin_get(proxy, "/stats")
        assert stat_value(stats, "http.http.downstream_rq_4xx") == 2


async def test_body_rewrite_validates_json_and_rewrites_the_response_body() -> None:
    filt = wasm_filter(sdk_filter("body_rewrite"))
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        bad = await _get(proxy, method="POST", content=b"not json")
        assert bad.status_code == 400
        assert bad.text == "invalid json\n"
        good = await _get(proxy, method="POST", content=b' {"a": 1} ')
        assert good.status_code == 200
        # The whole echoed body came back upper-cased, its length changed from the upstream's.
        assert '"BODY": " {\\"A\\": 1} "' in good.text
        assert "content-length" not in good.headers or int(good.headers["content-length"]) == len(
            good.content
        )
        plain = await _get(proxy)
        assert plain.text == plain.text.upper()


async def test_metrics_land_in_stats_and_prometheus() -> None:
    filt = wasm_filter(sdk_filter("metrics"))
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        for path in ("/a", "/bb", "/ccc"):
            assert (await _get(proxy, path)).status_code == 200
        await asyncio.sleep(0.05)
        stats = await admin_get(proxy, "/stats")
        assert stat_value(stats, "wasm_filter_requests_total") == 3
        assert stat_value(stats, "wasm_filter_active_requests") == 0
        prometheus = await admin_get(proxy, "/stats/prometheus")
        assert "wasm_filter_requests_total 3" in prometheus
        assert "wasm_filter_request_path_length_count 3" in prometheus


async def test_shared_data_counts_across_requests() -> None:
    filt = wasm_filter(sdk_filter("shared_counter"), vm_id="counting")
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        counts = [int((await _get(proxy)).headers["x-request-count"]) for _ in range(3)]
        assert counts[1] == counts[0] + 1 and counts[2] == counts[0] + 2


async def test_a_tick_resumes_paused_requests(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="remora.proxy.wasm")
    filt = wasm_filter(sdk_filter("tick_pause"))
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        loop = asyncio.get_running_loop()
        started = loop.time()
        responses = await asyncio.gather(*(_get(proxy, f"/p{i}") for i in range(3)))
        assert all(r.status_code == 200 for r in responses)
        assert all(r.json()["headers"]["x-paused-ticks"] == "1" for r in responses)
        assert loop.time() - started < 2.0
    assert "tick_pause: tick 1" in caplog.text


async def test_http_call_to_another_cluster_admits_or_denies() -> None:
    async with demo_upstreams(2) as ups:
        allow = wasm_filter(sdk_filter("http_call"), configuration="authz")
        config = _config(ups[0].port, allow, extra=[cluster("authz", [ups[1].port])])
        async with running_proxy(config) as proxy:
            response = await _get(proxy, "/orders")
            assert response.status_code == 200
            assert response.json()["headers"]["x-auth-status"] == "ok"
        deny = wasm_filter(sdk_filter("http_call"), configuration="nowhere")
        config = _config(ups[0].port, deny, extra=[cluster("nowhere", [1])])
        async with running_proxy(config) as proxy:
            response = await _get(proxy, "/orders")
            assert response.status_code == 403
            assert response.text == "denied by auth service\n"
        unknown = wasm_filter(sdk_filter("http_call"), configuration="no-such-cluster")
        async with running_proxy(_config(ups[0].port, unknown)) as proxy:
            response = await _get(proxy, "/orders")
            assert response.status_code == 503
            assert response.text == "http_call failed\n"


async def test_properties_with_envoy_names() -> None:
    filt = wasm_filter(sdk_filter("properties"), name="props")
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        response = await _get(proxy, "/where?x=1")
        assert response.headers["x-wasm-path"] == "/where?x=1"
        assert response.headers["x-wasm-plugin-name"] == "props"
        assert response.headers["x-wasm-source"].startswith("127.0.0.1:")
        assert response.headers["x-wasm-missing"] == "notfound"


async def test_a_trapping_filter_fails_its_request_and_the_vm_comes_back() -> None:
    filt = wasm_filter(sdk_filter("trap"), name="trapper")
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        trapped = await _get(proxy, headers={"x-trap": "1"})
        assert trapped.status_code == 503
        after = await _get(proxy)
        assert after.status_code == 200
        stats = await admin_get(proxy, "/stats")
        assert stat_value(stats, "wasm.trapper.traps") == 1
        assert stat_value(stats, "wasm.trapper.vm_restarts") == 1
        assert stat_value(stats, "wasm.trapper.failed_streams") == 1


async def test_fail_open_lets_the_request_through_without_the_filter() -> None:
    filt = wasm_filter(sdk_filter("trap"), name="lenient", fail_open=True)
    async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, filt)) as proxy:
        response = await _get(proxy, headers={"x-trap": "1"})
        assert response.status_code == 200
        stats = await admin_get(proxy, "/stats")
        assert stat_value(stats, "wasm.lenient.fail_open") == 1


async def test_a_typed_struct_wrapper_configures_the_same_filter() -> None:
    filt = wasm_filter(sdk_filter("add_header"), configuration="wrapped")
    inner = filt["typed_config"]
    for wrapper in ("udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"):
        wrapped = {
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": f"type.googleapis.com/{wrapper}",
                "type_url": inner["@type"],
                "value": {"config": inner["config"]},
            },
        }
        async with demo_upstreams(1) as ups, running_proxy(_config(ups[0].port, wrapped)) as proxy:
            response = await _get(proxy)
            assert response.headers["x-wasm-filter"] == "wrapped", wrapper
