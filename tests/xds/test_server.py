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


def _in_group(req: discovery_pb2.DiscoveryRequest, group: str) -> discovery_pb2.DiscoveryRequest:
    req.node.metadata.fields["remora.group"].string_value = group
    return req


async def test_one_clients_nack_does_not_withhold_config_from_its_group(served) -> None:  # type: ignore[no-untyped-def]
    cache, _server, channel = served
    cache.set_snapshot("sidecar", Snapshot.build([cluster("a", timeout="9s")]))
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    hostile = _Client(stub.StreamAggregatedResources)
    hostile.requests.put_nowait(_in_group(request(CDS, node_id="bad"), "sidecar"))
    first = await hostile.recv()
    hostile.requests.put_nowait(
        _in_group(request(CDS, nonce=first.nonce, error="no", node_id="bad"), "sidecar")
    )
    await asyncio.sleep(0.1)
    assert cache.nacks.total == 1
    # A new, well-behaved sidecar of the same group still gets the very version NACKed.
    newcomer = _Client(stub.StreamAggregatedResources)
    newcomer.requests.put_nowait(_in_group(request(CDS, node_id="good"), "sidecar"))
    response = await newcomer.recv()
    assert names_in(response) == ["a"] and response.version_info == first.version_info
    # The NACKing stream itself is not sent that version again.
    with pytest.raises(asyncio.TimeoutError):
        await hostile.recv(timeout=0.2)
    hostile.requests.put_nowait(None)
    newcomer.requests.put_nowait(None)


async def test_client_chosen_type_urls_neither_inject_metrics_nor_grow_series(served) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    cache, server, channel = served
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a")]))
    client = _Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources)
    hostile = ['x.e"} 1\nremora_xds_streams_active 999\n#', "a\\", "\n", "é" * 300]
    hostile += [f"type.googleapis.com/unknown.T{i}" for i in range(300)]
    for type_url in hostile:
        client.requests.put_nowait(request(type_url))
    client.requests.put_nowait(request(CDS))
    assert names_in(await client.recv()) == ["a"]  # unknown types are ignored, not answered
    text = server.stats.render(cache.nacks.total)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("remora_xds_streams_active", ())] == 1
    assert samples[("remora_xds_requests_total", (("type", "other"),))] == len(hostile)
    assert samples[("remora_xds_requests_total", (("type", "Cluster"),))] == 1
    assert len(samples) < 20, sorted(samples)
    client.requests.put_nowait(None)


async def test_a_nack_flood_is_bounded_in_memory_and_in_the_admin_view(served) -> None:  # type: ignore[no-untyped-def]
    import json

    from remora.xds.admin import ControlPlaneAdmin

    cache, server, channel = served
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a")]))
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    for i in range(40):
        client = _Client(stub.StreamAggregatedResources)
        client.requests.put_nowait(request(CDS, node_id="n" * 200_000))
        first = await client.recv()
        client.requests.put_nowait(request(CDS, nonce=first.nonce, error=f"{i}" * (1 << 20)))
        client.requests.put_nowait(None)
    deadline = asyncio.get_running_loop().time() + 10
    while cache.nacks.total < 40:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    status, _kind, body = ControlPlaneAdmin(cache, server, lambda: "").render("/nacks")
    assert status == 200 and len(body) < 200_000
    recent = json.loads(body)["recent"]
    assert all(len(n["reason"]) < 1100 and len(n["node"]) < 200 for n in recent)


async def test_a_delta_stream_subscribing_without_end_is_ended(served) -> None:  # type: ignore[no-untyped-def]
    from remora.xds.delta import MAX_SUBSCRIPTIONS

    cache, _server, channel = served
    cache.set_snapshot(DEFAULT, Snapshot.build([cla("a", 1)]))
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    client = _Client(stub.DeltaAggregatedResources)
    batch = 25_000
    for start in range(0, MAX_SUBSCRIPTIONS + batch, batch):
        names = [f"n{i}" for i in range(start, start + batch)]
        client.requests.put_nowait(delta_request(EDS, names))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            await client.recv(timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "more than 100000 resource names" in str(caught.value.details())
    # The server goes on serving others.
    other = _Client(stub.DeltaAggregatedResources)
    other.requests.put_nowait(delta_request(EDS, ["a"]))
    response = await other.recv()
    assert [r.name for r in response.resources] == ["a"]
    other.requests.put_nowait(None)
