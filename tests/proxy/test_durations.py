"""Connection and stream lifetimes, downstream and upstream: max_connection_duration,
max_stream_duration and the upstream idle_timeout, against a real upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from remora.proxy.server import ProxyServer
from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    file_access_log,
    http_listener,
    running_proxy,
)

_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _config(
    port: int, hcm_common: dict[str, Any], cluster_common: dict[str, Any], **hcm: Any
) -> dict[str, Any]:
    options = {
        _OPTIONS: {
            "@type": f"type.googleapis.com/{_OPTIONS}",
            "explicit_http_config": {"http_protocol_options": {}},
            "common_http_protocol_options": cluster_common,
        }
    }
    return bootstrap(
        [http_listener(common_http_protocol_options=hcm_common, **hcm)],
        [cluster("backend", [port], typed_extension_protocol_options=options)],
    )


def _counter(proxy: ProxyServer, name: str) -> int:
    return proxy.store.counter(name).value


async def _get(port: int, path: str) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return head, reader, writer


async def test_an_old_idle_connection_is_closed_and_a_busy_one_after_its_response() -> None:
    async with demo_upstreams(1) as ups:
        config = _config(ups[0].port, {"max_connection_duration": "0.3s"}, {})
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            head, reader, writer = await _get(port, "/")
            assert b"connection: close" not in head.lower()
            await reader.read(65536)  # the body
            async with asyncio.timeout(2):
                assert await reader.read() == b""  # closed once 0.3 s old, being idle
            writer.close()
            head, reader, writer = await _get(port, "/delay/500")  # still busy at 0.3 s
            assert head.startswith(b"HTTP/1.1 200")
            assert b"connection: close" in head.lower()
            writer.close()
            assert _counter(proxy, "http.http.downstream_cx_max_duration_reached") == 2


async def test_a_request_past_max_stream_duration_is_answered_504_dt(tmp_path: Any) -> None:
    async with demo_upstreams(1) as ups:
        log = tmp_path / "access.log"
        access_log = file_access_log(log, "%RESPONSE_CODE% %RESPONSE_FLAGS%\n")
        config = _config(ups[0].port, {"max_stream_duration": "0.2s"}, {}, access_log=access_log)
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                slow = await client.get("/delay/1000")
                fast = await client.get("/delay/10")
            assert (slow.status_code, slow.text) == (504, "downstream duration timeout")
            assert fast.status_code == 200
            assert _counter(proxy, "http.http.downstream_rq_max_duration_reached") == 1
        assert log.read_text().splitlines()[0] == "504 DT"


async def test_a_route_sets_or_lifts_max_stream_duration() -> None:
    async with demo_upstreams(1) as ups:
        routes = [
            {
                "match": {
                    "prefix": "/",
                    "headers": [{"name": "x-mode", "string_match": {"exact": "strict"}}],
                },
                "route": {
                    "cluster": "backend",
                    "max_stream_duration": {"max_stream_duration": "0.2s"},
                },
            },
            {
                "match": {
                    "prefix": "/",
                    "headers": [{"name": "x-mode", "string_match": {"exact": "free"}}],
                },
                "route": {
                    "cluster": "backend",
                    "max_stream_duration": {"max_stream_duration": "0s"},
                },
            },
            {"match": {"prefix": "/"}, "route": {"cluster": "backend"}},
        ]
        config = _config(ups[0].port, {"max_stream_duration": "0.5s"}, {}, route_config={
            "name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
        })  # fmt: skip
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                strict = await client.get("/delay/350", headers={"x-mode": "strict"})
                default = await client.get("/delay/350")
                free = await client.get("/delay/800", headers={"x-mode": "free"})
            assert (strict.status_code, strict.text) == (504, "downstream duration timeout")
            assert default.status_code == 200
            assert free.status_code == 200
            assert _counter(proxy, "http.http.downstream_rq_max_duration_reached") == 1


async def test_upstream_connections_close_when_idle_or_too_old() -> None:
    async with demo_upstreams(1) as ups:
        config = _config(ups[0].port, {}, {"idle_timeout": "0.6s"})
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/")).status_code == 200
                assert (await client.get("/")).status_code == 200  # reused while fresh
                await asyncio.sleep(1.5)
                assert _counter(proxy, "cluster.backend.upstream_cx_idle_timeout") == 1
                assert proxy.store.gauge("cluster.backend.upstream_cx_active").value == 0
                assert _counter(proxy, "cluster.backend.upstream_cx_total") == 1

        config = _config(ups[0].port, {}, {"max_connection_duration": "0.2s"})
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/delay/300")).status_code == 200  # aged while busy
                assert (await client.get("/")).status_code == 200
            assert _counter(proxy, "cluster.backend.upstream_cx_max_duration_reached") == 1
            assert _counter(proxy, "cluster.backend.upstream_cx_total") == 2


async def test_an_upstream_stream_past_max_stream_duration_is_answered_408_umsdr(
    tmp_path: Any,
) -> None:
    async with demo_upstreams(1) as ups:
        log = tmp_path / "access.log"
        access_log = file_access_log(log, "%RESPONSE_CODE% %RESPONSE_FLAGS%\n")
        config = _config(ups[0].port, {}, {"max_stream_duration": "0.2s"}, access_log=access_log)
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                slow = await client.get("/delay/1000")
                fast = await client.get("/delay/10")
            assert (slow.status_code, slow.text) == (408, "upstream max stream duration reached")
            assert fast.status_code == 200
            assert _counter(proxy, "cluster.backend.upstream_rq_max_duration_reached") == 1
        assert log.read_text().splitlines()[0] == "408 UMSDR"
