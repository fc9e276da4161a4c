"""End to end on loopback: control plane + two remora proxies + demo upstreams.

Traffic runs continuously through both proxies while the source changes, a bad config is
NACKed, and the control plane restarts; not one request may fail. Once with state-of-the-world
ADS, once with delta ADS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.demo.upstream import DemoUpstream
from remora.proxy.server import AdminView, ProxyServer
from remora.xds.cache import SnapshotCache
from remora.xds.client import AdsClient
from remora.xds.server import XdsServer
from remora.xds.source import DirectorySource, mesh_group

MESH = "services:\n  web:\n    endpoints: [{{address: 127.0.0.1, port: {port}}}]\n"


def _bootstrap(node: str, xds_port: int, api_type: str) -> dict[str, object]:
    return {
        "node": {"id": node, "cluster": "e2e"},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [{"google_grpc": {"target_uri": f"127.0.0.1:{xds_port}"}}],
            },
            "lds_config": {"ads": {}},
            "cds_config": {"ads": {}},
        },
    }


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def _proxy(
    node: str, xds_port: int, api_type: str
) -> AsyncIterator[tuple[ProxyServer, AdsClient]]:
    server = ProxyServer(compile_bootstrap(parse_dict(_bootstrap(node, xds_port, api_type))), 1.0)
    await server.start()
    client = AdsClient(server, f"127.0.0.1:{xds_port}", backoff_base=0.05, backoff_max=0.2)
    client.start()
    try:
        yield server, client
    finally:
        await client.stop()
        await server.close()


class _Traffic:
    """Requests through every proxy, back to back, recording who answered and any failure."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.seen: list[str] = []
        self.failures: list[str] = []
        self._stop = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(p)) for p in self.ports]

    async def _loop(self, port: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as http:
            while not self._stop:
                try:
                    response = await http.get("/")
                    if response.status_code != 200:
                        self.failures.append(f"{port}: {response.status_code}")
                    self.seen.append(response.headers.get("x-upstream-name", "?"))
                except httpx.HTTPError as exc:
                    self.failures.append(f"{port}: {exc!r}")
                await asyncio.sleep(0.005)

    def last(self, n: int) -> set[str]:
        return set(self.seen[-n:])

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_changes_nacks_and_restarts_lose_no_request(tmp_path: Path, api_type: str) -> None:
    async with DemoUpstream("up-a") as a, DemoUpstream("up-b") as b:
        (tmp_path / "mesh.yaml").write_text(MESH.format(port=a.port))
        cache = SnapshotCache(mesh_group)
        source = DirectorySource(tmp_path, cache)
        ready = asyncio.Event()
        watch = asyncio.create_task(source.watch(ready))
        await ready.wait()
        xds = XdsServer(cache)
        xds_port = await xds.start("127.0.0.1", 0)
        try:
            async with (
                _proxy("p1", xds_port, api_type) as (p1, c1),
                _proxy("p2", xds_port, api_type) as (p2, c2),
            ):
                assert c1.state.protocol == ("delta" if api_type == "DELTA_GRPC" else "sotw")
                await _until(
                    lambda: all(any(r.name == "web" for r in p.listeners) for p in (p1, p2))
                )
                await _until(lambda: all("web" in p.clusters and p.clusters["web"].hosts
                                         for p in (p1, p2)))  # fmt: skip
                traffic = _Traffic([p1.listener_port("web"), p2.listener_port("web")])
                traffic.start()
                await _until(lambda: len(traffic.seen) > 20)
                assert traffic.last(10) == {"up-a"}

                # 1. A change in the source shifts traffic on both proxies.
                await asyncio.sleep(0.2)
                (tmp_path / "mesh.yaml").write_text(MESH.format(port=b.port))
                await _until(lambda: traffic.last(20) == {"up-b"}, timeout=3.0)

                # 2. A config the proxies reject is NACKed; traffic stays on the old config.
                (tmp_path / "raw.yaml").write_text(
                    "resources:\n"
                    "  - {'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster,"
                    " name: extra, connect_timeout: 1s, upstream_bind_config: {}}\n"
                )
                await _until(lambda: cache.nacks.total >= 2, timeout=3.0)
                reasons = {n.reason for n in cache.nacks.recent}
                assert any("upstream_bind_config" in r for r in reasons), reasons
                dump = AdminView(p1).config_dump()["configs"]
                status = next(c for c in dump if c["@type"].endswith("AdsClientStatus"))
                assert "upstream_bind_config" in status["types"]["CDS"]["last_nack"]["reason"]
                assert status["types"]["CDS"]["version_info"]
                count = len(traffic.seen)
                await _until(lambda: len(traffic.seen) > count + 20)
                assert traffic.last(20) == {"up-b"}
                (tmp_path / "raw.yaml").unlink()

                # 3. Restart the control plane: traffic continues, proxies reconnect.
                await xds.stop(0)
                count = len(traffic.seen)
                await _until(lambda: len(traffic.seen) > count + 20)
                await _until(lambda: not c1.connected and not c2.connected)
                xds = XdsServer(cache)
                assert await xds.start("127.0.0.1", xds_port) == xds_port
                await _until(lambda: len(xds.streams) == 2, timeout=5.0)
                assert {s.protocol for s in xds.streams.values()} == {c1.state.protocol}
                if api_type == "DELTA_GRPC":
                    # initial_resource_versions: the new stream re-sends nothing unchanged.
                    await asyncio.sleep(0.2)
                    assert not any(k[0] == "responses" for k in xds.stats.counters)
                (tmp_path / "mesh.yaml").write_text(MESH.format(port=a.port))
                await _until(lambda: traffic.last(20) == {"up-a"}, timeout=3.0)
                await traffic.stop()
                assert traffic.failures == []
                assert len(traffic.seen) > 100
        finally:
            watch.cancel()
            await xds.stop(0)
