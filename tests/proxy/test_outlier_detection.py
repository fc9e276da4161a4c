"""Outlier detection through the real proxy: a host that answers 503 and one that refuses
connections are ejected, shown in /clusters, and returned after their ejection time."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx

from remora.proxy.server import ProxyServer
from tests.proxy.harness import (
    admin_get,
    bootstrap,
    cluster,
    demo_upstreams,
    health_flags,
    http_listener,
    running_proxy,
)
from tests.proxy.scripted import read_head, scripted_upstream

_OUTLIER = {
    "consecutive_5xx": 3,
    "interval": "0.1s",
    "base_ejection_time": "0.5s",
    "max_ejection_percent": 50,
}


async def _always_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_head(reader)
        writer.write(b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()


async def _flags(proxy: ProxyServer, port: int) -> str:
    return health_flags(await admin_get(proxy, "/clusters"), "backend")[port]


def _stat(proxy: ProxyServer, name: str) -> int:
    full = f"cluster.backend.outlier_detection.{name}"
    return (
        proxy.store.gauge(full).value
        if name == "ejections_active"
        else proxy.store.counter(full).value
    )


async def _statuses(proxy: ProxyServer, n: int) -> list[int]:
    url = f"http://127.0.0.1:{proxy.listener_port('http')}"
    async with httpx.AsyncClient(base_url=url) as client:
        return [(await client.get("/")).status_code for _ in range(n)]


def _config(ports: list[int], **outlier: Any) -> dict[str, Any]:
    return bootstrap(
        [http_listener()],
        [cluster("backend", ports, outlier_detection={**_OUTLIER, **outlier})],
    )


async def test_a_host_answering_503_is_ejected_then_returned_with_backoff() -> None:
    async with demo_upstreams(2) as ups, scripted_upstream(_always_503) as bad:
        # Sweeps 1 s apart: the host returns at the first sweep after its 0.2 s, and is
        # ejected again well before the next sweep could lower its backoff.
        config = _config(
            [ups[0].port, ups[1].port, bad.port], interval="1s", base_ejection_time="0.2s"
        )
        async with running_proxy(config) as proxy:
            statuses = await _statuses(proxy, 30)
            assert statuses.count(503) == 3  # the third 503 in a row ejects it
            assert await _flags(proxy, bad.port) == "/failed_outlier_check"
            assert _stat(proxy, "ejections_enforced_consecutive_5xx") == 1
            assert _stat(proxy, "ejections_active") == 1
            host = next(h for h in proxy.clusters["backend"].hosts if h.port == bad.port)
            assert host.outlier is not None and host.outlier.ejection_time == 0.2

            deadline = time.monotonic() + 3
            while await _flags(proxy, bad.port) != "healthy":
                assert time.monotonic() < deadline, "never returned"
                await asyncio.sleep(0.01)
            statuses = await _statuses(proxy, 30)
            assert statuses.count(503) == 3
            assert host.outlier.ejection_time == 0.4  # ejected twice in a row: twice as long
            assert _stat(proxy, "ejections_enforced_total") == 2


async def test_a_host_refusing_connections_is_ejected_as_local_origin_failures() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    async with demo_upstreams(2) as ups:
        config = _config(
            [ups[0].port, dead_port, ups[1].port],
            split_external_local_origin_errors=True,
            consecutive_local_origin_failure=2,
        )
        async with running_proxy(config) as proxy:
            statuses = await _statuses(proxy, 20)
            assert statuses.count(503) == 2
            assert await _flags(proxy, dead_port) == "/failed_outlier_check"
            assert _stat(proxy, "ejections_enforced_consecutive_local_origin_failure") == 1
            assert _stat(proxy, "ejections_enforced_consecutive_5xx") == 0
