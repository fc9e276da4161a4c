"""tcp_proxy end to end: HTTP spoken through a TCP listener to a real upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

from remora.demo.upstream import DemoUpstream
from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    endpoints,
    file_access_log,
    running_proxy,
    tcp_listener,
)
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


async def test_ipv6_addresses_are_bracketed_in_the_access_log(tmp_path: Path) -> None:
    log_path = tmp_path / "tcp.log"
    log = file_access_log(log_path, "%DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_HOST%\n")
    listener = tcp_listener("backend", access_log=log)
    listener["address"]["socket_address"]["address"] = "::1"
    upstream = DemoUpstream(name="v6", host="::1", port=0)
    await upstream.start()
    try:
        backend = {**cluster("backend", []), "load_assignment": {
            "cluster_name": "backend",
            "endpoints": [{"lb_endpoints": endpoints([upstream.port], host="::1")}]}}  # fmt: skip
        async with running_proxy(bootstrap([listener], [backend])) as proxy:
            reader, writer = await asyncio.open_connection("::1", proxy.listener_port("tcp"))
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
            deadline = asyncio.get_running_loop().time() + 3
            while not (log_path.exists() and log_path.read_text()):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
    finally:
        await upstream.close()
    downstream, upstream_host = log_path.read_text().split()
    assert downstream.startswith("[::1]:") and int(downstream.rsplit(":", 1)[1]) > 0
    assert upstream_host == f"[::1]:{upstream.port}"
