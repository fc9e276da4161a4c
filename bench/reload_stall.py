"""How long a reload of a large bootstrap holds up the event loop that serves traffic.

    PYTHONPATH=. .venv/bin/python bench/reload_stall.py [clusters]

It writes a YAML bootstrap with one HTTP listener routing to `clusters` clusters (3000 by
default), starts a `ProxyServer` from it, rewrites every route, and reloads through `Reloader`
while a task measures how late each 1 ms sleep wakes up. It prints the reload time and the worst
and 99th-percentile loop stall.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
import yaml

from remora.proxy.cli import load
from remora.proxy.reload import Reloader
from remora.proxy.server import ProxyServer

HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _bootstrap(clusters: int, tag: str) -> dict[str, Any]:
    routes = [
        {"match": {"prefix": f"/{tag}{i}"}, "route": {"cluster": f"c{i}"}} for i in range(clusters)
    ]
    hcm = {
        "@type": HCM,
        "stat_prefix": "http",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    return {
        "static_resources": {
            "listeners": [{"name": "http", "address": address, "filter_chains": [{"filters": [
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
            ]}]}],
            "clusters": [
                {"name": f"c{i}", "type": "STATIC", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": f"c{i}", "endpoints": [{"lb_endpoints": [
                     {"endpoint": {"address": {"socket_address": {
                         "address": "127.0.0.1", "port_value": 8000 + i % 100}}}}]}]}}
                for i in range(clusters)
            ],
        }
    }  # fmt: skip


async def main(clusters: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bootstrap.yaml"
        path.write_text(yaml.safe_dump(_bootstrap(clusters, "a")))
        server = ProxyServer(load(str(path)), drain_timeout=0.5)
        await server.start()
        reloader = Reloader(
            str(path), lambda: server.config, server.apply_static, server.store, load
        )
        path.write_text(yaml.safe_dump(_bootstrap(clusters, "b")))
        stalls: list[float] = []
        done = asyncio.Event()

        async def measure() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                stalls.append(time.perf_counter() - started - 0.001)

        task = asyncio.create_task(measure())
        started = time.perf_counter()
        applied = await reloader.reload("bench")
        elapsed = time.perf_counter() - started
        done.set()
        await task
        await server.close()
    stalls.sort()
    p99 = stalls[len(stalls) * 99 // 100]
    print(f"clusters: {clusters}, applied: {applied}, reload: {elapsed:.2f} s")
    print(f"loop stall: worst {stalls[-1] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
