"""The proxy's delta (incremental) client rules, played against the control plane's DeltaStream.

Both halves are sans-IO, so each exchange is the real encoded response parsed back, and every
request the client makes is fed to the real server state.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

import remora.config.typeregistry  # noqa: F401  (typed_config types for the listeners)
from remora.xds import types
from remora.xds.client_delta import DeltaClientState
from remora.xds.delta import DeltaStream
from remora.xds.nacks import NackLog
from remora.xds.snapshot import Snapshot
from tests.xds.helpers import cla, cluster, parse_delta, route
from tests.xds.test_client_state import _listener

CDS, EDS, LDS, RDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE


class _Pair:
    """A client state wired to a server stream: `send` delivers requests, returns responses."""

    def __init__(self, snapshot: Snapshot, nacks: NackLog | None = None) -> None:
        self.client = DeltaClientState(base_pb2.Node(id="p1", user_agent_name="remora"))
        self.nacks = nacks or NackLog()
        self.server = DeltaStream("p1", "g", self.nacks)
        self.snapshot = snapshot
        self.requests: list[discovery_pb2.DeltaDiscoveryRequest] = []

    def send(
        self, requests: list[discovery_pb2.DeltaDiscoveryRequest]
    ) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        self.requests.extend(requests)
        out = []
        for request in requests:
            out += [parse_delta(r.data) for r in self.server.on_request(request, self.snapshot)]
        return out

    def pump(self, responses: list[discovery_pb2.DeltaDiscoveryResponse]) -> list[bool]:
        """Feed responses to the client and its replies back, until the exchange settles."""
        accepted = []
        while responses:
            changed, replies = self.client.on_response(responses.pop(0))
            accepted.append(changed)
            responses.extend(self.send(list(replies)))
        return accepted

    def push(self, snapshot: Snapshot) -> list[bool]:
        self.snapshot = snapshot
        return self.pump([parse_delta(r.data) for r in self.server.on_snapshot(snapshot)])

    def connect(self) -> list[bool]:
        return self.pump(self.send(self.client.initial_requests()))


def _mesh(*names: str, port: int = 1) -> Snapshot:
    messages = []
    for name in names:
        messages += [cluster(name), cla(name, port)]
    return Snapshot.build(messages)


def test_wildcard_cds_lds_then_eds_subscribed_by_name() -> None:
    pair = _Pair(_mesh("a", "b"))
    initial = pair.client.initial_requests()
    assert [(r.type_url, list(r.resource_names_subscribe)) for r in initial] == [
        (CDS, ["*"]),
        (LDS, ["*"]),
    ]
    assert initial[0].node.id == "p1" and not initial[0].initial_resource_versions
    assert pair.connect() == [True, True]  # CDS, then EDS for the names it named (no LDS yet)
    eds_subscribe = [r for r in pair.requests if r.type_url == EDS and not r.response_nonce]
    assert [list(r.resource_names_subscribe) for r in eds_subscribe] == [["a", "b"]]
    clusters = pair.client.resources.desired_clusters()
    assert {n: [e.port for e in c.endpoints] for n, c in clusters.items()} == {"a": [1], "b": [1]}


def test_acks_echo_the_nonce_without_error_detail() -> None:
    pair = _Pair(_mesh("a"))
    pair.connect()
    acks = [r for r in pair.requests if r.response_nonce]
    assert {r.type_url for r in acks} == {CDS, EDS}
    assert not any(r.HasField("error_detail") for r in acks)
    assert pair.client.status()["CDS"]["version_info"] == pair.snapshot.version(CDS)


def test_only_changes_arrive_and_eds_changes_update_in_place() -> None:
    pair = _Pair(_mesh("a", "b"))
    pair.connect()
    before = len(pair.requests)
    newer = Snapshot.build([cluster("a"), cla("a", 1), cluster("b"), cla("b", 7)])
    assert pair.push(newer) == [True]
    [ack] = pair.requests[before:]
    assert ack.type_url == EDS and ack.response_nonce
    assert [e.port for e in pair.client.resources.desired_clusters()["b"].endpoints] == [7]


def test_removed_clusters_are_deleted_and_their_endpoints_unsubscribed() -> None:
    pair = _Pair(_mesh("a", "b"))
    pair.connect()
    before = len(pair.requests)
    pair.push(_mesh("a"))
    assert set(pair.client.resources.clusters) == {"a"}
    assert set(pair.client.resources.desired_clusters()) == {"a"}
    unsubscribe = [r for r in pair.requests[before:] if r.type_url == EDS and not r.response_nonce]
    assert [(list(r.resource_names_subscribe), list(r.resource_names_unsubscribe))
            for r in unsubscribe] == [([], ["b"])]  # fmt: skip
    assert set(pair.client.resources.endpoints) == {"a"}
    # The server honoured it: a change to `b`'s endpoints is not sent.
    assert pair.push(Snapshot.build([cluster("a"), cla("a", 1), cla("b", 9)])) == []


def test_added_cluster_warms_until_its_endpoints_arrive() -> None:
    pair = _Pair(_mesh("a"))
    pair.connect()
    pair.snapshot = Snapshot.build([cluster("a"), cla("a", 1), cluster("c")])
    [cds] = [parse_delta(r.data) for r in pair.server.on_snapshot(pair.snapshot)]
    changed, [ack, subscribe] = pair.client.on_response(cds)
    assert changed and list(subscribe.resource_names_subscribe) == ["c"]
    assert set(pair.client.resources.desired_clusters()) == {"a"}  # `c` is warming
    pair.snapshot = Snapshot.build([cluster("a"), cla("a", 1), cluster("c"), cla("c", 3)])
    pair.pump(pair.send([ack, subscribe]))
    assert set(pair.client.resources.desired_clusters()) == {"a", "c"}


def test_listener_warms_until_its_routes_arrive_then_rds_unsubscribes() -> None:
    pair = _Pair(Snapshot.build([_listener("l", "r")]))
    pair.connect()
    assert pair.client.resources.desired_listeners() == []
    assert pair.push(Snapshot.build([_listener("l", "r"), route("r", "web")])) == [True]
    [listener] = pair.client.resources.desired_listeners()
    assert listener.name == "l"
    before = len(pair.requests)
    pair.push(Snapshot.build([route("r", "web")]))
    assert pair.client.resources.desired_listeners() == []
    [rds] = [r for r in pair.requests[before:] if r.type_url == RDS]
    assert list(rds.resource_names_unsubscribe) == ["r"]


def test_bad_resource_is_nacked_by_nonce_and_the_rest_kept() -> None:
    pair = _Pair(_mesh("a"))
    pair.connect()
    bad = cluster("b")
    bad.upstream_bind_config.SetInParent()
    pair.snapshot = Snapshot.build([cluster("a"), cla("a", 1), bad])
    [response] = [parse_delta(r.data) for r in pair.server.on_snapshot(pair.snapshot)]
    changed, [nack] = pair.client.on_response(response)
    assert not changed
    assert nack.response_nonce == response.nonce and nack.HasField("error_detail")
    assert "resources[0](b).upstream_bind_config" in nack.error_detail.message
    assert set(pair.client.resources.clusters) == {"a"}
    status = pair.client.status()["CDS"]
    assert status["last_nack"]["rejected_version"] == response.system_version_info
    assert status["version_info"] != response.system_version_info  # still the last good one
    pair.send([nack])
    assert pair.nacks.total == 1 and "upstream_bind_config" in pair.nacks.recent[0].reason
    assert pair.push(pair.snapshot) == []  # the rejected version is not re-sent


def test_good_resource_rejected_alongside_a_bad_one_arrives_once_fixed() -> None:
    pair = _Pair(Snapshot.build([cluster("a")]))
    pair.connect()
    bad = cluster("b")
    bad.upstream_bind_config.SetInParent()
    assert pair.push(Snapshot.build([cluster("a", timeout="2s"), bad])) == [False]
    assert pair.client.resources.clusters["a"].connect_timeout == 1.0
    assert pair.push(Snapshot.build([cluster("a", timeout="2s"), cluster("b")])) == [True]
    assert pair.client.resources.clusters["a"].connect_timeout == 2.0
    assert set(pair.client.resources.clusters) == {"a", "b"}


def test_reconnect_sends_initial_versions_and_gets_only_what_changed() -> None:
    first = _Pair(_mesh("a", "b"))
    first.connect()
    # A new stream (new server state) to a control plane whose config moved on meanwhile.
    second = _Pair(Snapshot.build([cluster("a"), cla("a", 5)]))
    second.client = first.client
    initial = {r.type_url: r for r in first.client.initial_requests()}
    assert dict(initial[CDS].initial_resource_versions) == {
        name: r.version for name, r in first.snapshot.resources(CDS).items()
    }
    assert list(initial[EDS].resource_names_subscribe) == ["a", "b"]
    assert set(initial[EDS].initial_resource_versions) == {"a", "b"}
    responses = second.send(list(initial.values()))
    assert [(r.type_url, [x.name for x in r.resources], list(r.removed_resources))
            for r in responses] == [(CDS, [], ["b"]), (EDS, ["a"], ["b"])]  # fmt: skip
    second.pump(responses)
    clusters = first.client.resources.desired_clusters()
    assert {n: [e.port for e in c.endpoints] for n, c in clusters.items()} == {"a": [5]}


def test_reconnect_with_nothing_changed_sends_nothing() -> None:
    first = _Pair(_mesh("a"))
    first.connect()
    second = _Pair(first.snapshot)
    second.client = first.client
    assert second.send(first.client.initial_requests()) == []


def test_heartbeat_without_body_is_ignored_but_an_unknown_one_is_nacked() -> None:
    pair = _Pair(_mesh("a"))
    pair.connect()
    version = pair.client.resources.versions(CDS)["a"]
    heartbeat = discovery_pb2.DeltaDiscoveryResponse(type_url=CDS, nonce="h1")
    heartbeat.resources.add(name="a", version=version)
    changed, [ack] = pair.client.on_response(heartbeat)
    assert changed and not ack.HasField("error_detail")
    stray = discovery_pb2.DeltaDiscoveryResponse(type_url=CDS, nonce="h2")
    stray.resources.add(name="z", version="1")
    changed, [nack] = pair.client.on_response(stray)
    assert not changed and "resources[0](z): resource body is missing" in nack.error_detail.message


def test_declared_name_must_match_the_body() -> None:
    state = DeltaClientState(base_pb2.Node(id="p1"))
    response = discovery_pb2.DeltaDiscoveryResponse(type_url=CDS, nonce="1")
    item = response.resources.add(name="x", version="1")
    item.resource.Pack(cluster("a"))
    changed, [nack] = state.on_response(response)
    assert not changed and "declared as 'x'" in nack.error_detail.message


def test_unknown_type_is_nacked() -> None:
    state = DeltaClientState(base_pb2.Node(id="p1"))
    response = discovery_pb2.DeltaDiscoveryResponse(type_url="type.googleapis.com/x.Y", nonce="7")
    changed, [nack] = state.on_response(response)
    assert not changed and nack.response_nonce == "7" and nack.error_detail.message
