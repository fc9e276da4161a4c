"""The gRPC shell over real sockets, with the generated stubs from xds-protos as the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from remora.xds import types
from remora.xds.cache import DEFAULT, SnapshotCache
from remora.xds.server import XdsServer
from remora.xds.snapshot import Snapshot
from tests.xds.helpers import cla, cluster, delta_request, names_in, request

CDS, EDS = types.CLUSTER, types.ENDPOINT


class _Client:
    """One bidirectional stream driven by a queue of requests."""

    def __init__(self, call_factory: object) -> None:
        self.requests: asyncio.Queue[object] = asyncio.Queue()
        self.call = call_factory(self._iter())  # type: ignore[operator]

    async def _iter(self) -> AsyncIterator[object]:
        while True:
            item = await self.requests.get()
            if item is None:
                return
            yield item

    async def recv(self, timeout: float = 3.0) -> object:
        return await asyncio.wait_for(self.call.read(), timeout)


@pytest.fixture
async def served() -> AsyncIterator[tuple[SnapshotCache, XdsServer, grpc.aio.Channel]]:
    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield cache, server, channel
    await channel.close()
    await server.stop(0)


async def test_ads_sotw_push_ack_and_update(served) -> None:  # type: ignore[no-untyped-def]
    cache, server, channel = served
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a"), cla("a", 1)]))
    client = _Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources)
    client.requests.put_nowait(request(CDS))
    response = await client.recv()
    assert names_in(response) == ["a"]
    client.requests.put_nowait(request(CDS, nonce=response.nonce, version=response.version_info))
    client.requests.put_nowait(request(EDS, ["a"]))
    eds = await client.recv()
    assert eds.type_url == EDS and names_in(eds) == ["a"]
    client.requests.put_nowait(request(EDS, ["a"], nonce=eds.nonce, version=eds.version_info))
    await asyncio.sleep(0.05)
    assert [s.node_id for s in server.streams.values()] == ["n1"]
    # A no-op set sends nothing; a change sends only the changed type.
    assert not cache.set_snapshot(DEFAULT, Snapshot.build([cla("a", 1), cluster("a")]))
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a"), cla("a", 2)]))
    update = await client.recv()
    assert update.type_url == EDS and update.nonce != eds.nonce
    with pytest.raises(asyncio.TimeoutError):
        await client.recv(timeout=0.2)
    client.requests.put_nowait(None)
    assert server.stats.counters[("nack_requests", "Cluster")] == 0


async def test_ads_nack_is_recorded_and_not_resent(served) -> None:  # type: ignore[no-untyped-def]
    cache, server, channel = served
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a")]))
    client = _Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources)
    client.requests.put_nowait(request(CDS))
    first = await client.recv()
    client.requests.put_nowait(request(CDS, nonce=first.nonce, error="field x is wrong"))
    await asyncio.sleep(0.1)
    assert cache.nacks.total == 1 and cache.nacks.recent[0].reason == "field x is wrong"
    assert server.stats.counters[("nack_requests", "Cluster")] == 1
    with pytest.raises(asyncio.TimeoutError):
        await client.recv(timeout=0.2)
    client.requests.put_nowait(None)


async def test_ads_delta(served) -> None:  # type: ignore[no-untyped-def]
    cache, _server, channel = served
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a"), cluster("b")]))
    client = _Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources)
    client.requests.put_nowait(delta_request(CDS))
    first = await client.recv()
    assert isinstance(first, discovery_pb2.DeltaDiscoveryResponse)
    assert sorted(r.name for r in first.resources) == ["a", "b"]
    client.requests.put_nowait(delta_request(CDS, nonce=first.nonce))
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a")]))
    second = await client.recv()
    assert list(second.removed_resources) == ["b"] and not second.resources
    client.requests.put_nowait(None)


async def test_per_type_service_without_type_url(served) -> None:  # type: ignore[no-untyped-def]
    cache, _server, channel = served
    cache.set_snapshot("n1", Snapshot.build([cluster("only-n1")]))
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("everyone")]))
    client = _Client(cds_pb2_grpc.ClusterDiscoveryServiceStub(channel).StreamClusters)
    client.requests.put_nowait(request(""))
    response = await client.recv()
    assert names_in(response) == ["only-n1"]
    other = _Client(cds_pb2_grpc.ClusterDiscoveryServiceStub(channel).StreamClusters)
    other.requests.put_nowait(request("", node_id="n2"))
    assert names_in(await other.recv()) == ["everyone"]
    client.requests.put_nowait(None)
    other.requests.put_nowait(None)
