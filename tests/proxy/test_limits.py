"""Circuit breakers and connection-manager timeouts, against real upstreams."""

from __future__ import annotations

import asyncio

import httpx

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy


async def test_pending_overflow_is_503_uo() -> None:
    thresholds = {"thresholds": [{"max_connections": 1, "max_pending_requests": 1}]}
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener()], [cluster("backend", [ups[0].port], circuit_breakers=thresholds)]
            )
        ) as proxy,
    ):
        url = f"http://127.0.0.1:{proxy.listener_port('http')}"
        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(base_url=url, limits=limits) as client:
            responses = await asyncio.gather(*(client.get("/delay/300") for _ in range(3)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 200, 503]  # one in flight, one pending, one over the limit
        assert proxy.store.counter("cluster.backend.upstream_rq_pending_overflow").value == 1
        assert proxy.store.counter("cluster.backend.upstream_cx_total").value == 1


async def test_idle_connection_is_closed() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(common_http_protocol_options={"idle_timeout": "0.3s"})],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("http"))
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 3)  # body, then EOF after the idle timeout
        assert rest.rstrip().endswith(b"}")
        writer.close()
        assert proxy.store.counter("http.http.downstream_cx_idle_timeout").value == 1


async def test_request_timeout_for_a_slow_body_is_408() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap([http_listener(request_timeout="0.3s")], [cluster("backend", [ups[0].port])])
        ) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("http"))
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly part")
        response = await asyncio.wait_for(reader.read(), 3)
        writer.close()
        assert response.startswith(b"HTTP/1.1 408")
        assert proxy.store.counter("http.http.downstream_rq_timeout").value == 1
