"""tcp_proxy end to end: HTTP spoken through a TCP listener to a real upstream."""

from __future__ import annotations

import asyncio

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, running_proxy, tcp_listener
from tests.proxy.rawclient import send_and_read


async def test_tcp_proxy_forwards_and_counts_bytes() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap([tcp_listener("backend")], [cluster("backend", [ups[0].port])])
        ) as proxy,
    ):
        port = proxy.listener_port("tcp")
        request = b"GET /tcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        raw = await send_and_read(port, request)
        assert raw.startswith(b"HTTP/1.1 200")
        assert b"x-upstream-name: up-0" in raw
        await asyncio.sleep(0.05)
        store = proxy.store
        assert store.counter("tcp.tcp.downstream_cx_total").value == 1
        assert store.counter("tcp.tcp.downstream_cx_rx_bytes_total").value == len(request)
        assert store.counter("tcp.tcp.downstream_cx_tx_bytes_total").value == len(raw)


async def test_tcp_proxy_idle_timeout_closes() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [tcp_listener("backend", idle_timeout="0.2s")], [cluster("backend", [ups[0].port])]
            )
        ) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("tcp"))
        data = await asyncio.wait_for(reader.read(), 3)
        assert data == b""  # closed by the proxy after 0.2 s of silence
        writer.close()
        assert proxy.store.counter("tcp.tcp.idle_timeout").value == 1


async def test_tcp_proxy_upstream_down_closes_client() -> None:
    async with running_proxy(bootstrap([tcp_listener("dead")], [cluster("dead", [1])])) as proxy:
        raw = await send_and_read(proxy.listener_port("tcp"), b"hello", timeout=3)
        assert raw == b""
        assert proxy.store.counter("cluster.dead.upstream_cx_connect_fail").value == 1
