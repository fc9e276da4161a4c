"""A closed downstream connection is freed by reference counting, not left for the collector."""

from __future__ import annotations

import asyncio
import gc

from remora.proxy.http.downstream import DownstreamConnection
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy


async def _one_request(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    await reader.read()  # to the proxy's close
    writer.close()
    await writer.wait_closed()


async def test_closed_connections_leave_no_reference_cycle() -> None:
    # A cycle per closed connection (parser <-> connection, transport <-> connection) made the
    # full collections that freed them take 100-160 ms under connection churn.
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            await _one_request(port)
            gc.collect()
            gc.disable()
            try:
                for _ in range(40):
                    await _one_request(port)
                await asyncio.sleep(0.1)
                alive = sum(isinstance(o, DownstreamConnection) for o in gc.get_objects())
                gc.set_debug(gc.DEBUG_SAVEALL)  # what only the cycle collector could free
                gc.collect()
                cyclic = sum(isinstance(o, DownstreamConnection) for o in gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
    assert cyclic == 0, f"{cyclic} closed connections wait for the cycle collector"
    assert alive <= 1, f"{alive} closed connections are still held (a timer?)"
