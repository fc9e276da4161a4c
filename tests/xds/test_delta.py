"""Incremental xDS rules: subscriptions, removed_resources, initial_resource_versions, NACK."""

from __future__ import annotations

from remora.xds import types
from remora.xds.delta import DeltaStream
from remora.xds.nacks import NackLog
from remora.xds.snapshot import Snapshot
from tests.xds.helpers import cla, cluster, delta_request, parse_delta

CDS, EDS = types.CLUSTER, types.ENDPOINT


def _stream(nacks: NackLog | None = None) -> DeltaStream:
    return DeltaStream("n1", "g", nacks or NackLog())


def test_wildcard_gets_everything_then_only_changes() -> None:
    stream = _stream()
    [first] = stream.on_request(delta_request(CDS), Snapshot.build([cluster("a"), cluster("b")]))
    parsed = parse_delta(first.data)
    assert [r.name for r in parsed.resources] == ["a", "b"] and not parsed.removed_resources
    stream.on_request(delta_request(CDS, nonce=first.nonce), None)
    [second] = stream.on_snapshot(Snapshot.build([cluster("a"), cluster("b", timeout="2s")]))
    assert [r.name for r in parse_delta(second.data).resources] == ["b"]


def test_removed_resources_name_deleted_ones() -> None:
    stream = _stream()
    stream.on_request(delta_request(CDS), Snapshot.build([cluster("a"), cluster("b")]))
    [response] = stream.on_snapshot(Snapshot.build([cluster("a")]))
    parsed = parse_delta(response.data)
    assert list(parsed.removed_resources) == ["b"] and not parsed.resources
    assert stream.known(CDS).keys() == {"a"}


def test_initial_resource_versions_skip_what_the_client_has() -> None:
    snap = Snapshot.build([cluster("a"), cluster("b")])
    version_a = snap.resources(CDS)["a"].version
    request = delta_request(CDS, initial={"a": version_a, "gone": "old"})
    [response] = _stream().on_request(request, snap)
    parsed = parse_delta(response.data)
    assert [r.name for r in parsed.resources] == ["b"]
    assert list(parsed.removed_resources) == ["gone"]


def test_initial_versions_that_match_send_nothing() -> None:
    snap = Snapshot.build([cluster("a")])
    initial = {"a": snap.resources(CDS)["a"].version}
    assert _stream().on_request(delta_request(CDS, initial=initial), snap) == []


def test_subscribe_and_unsubscribe_by_name() -> None:
    snap = Snapshot.build([cla("a", 1), cla("b", 2)])
    stream = _stream()
    [first] = stream.on_request(delta_request(EDS, subscribe=["a"]), snap)
    assert [r.name for r in parse_delta(first.data).resources] == ["a"]
    [second] = stream.on_request(delta_request(EDS, subscribe=["b"], nonce=first.nonce), snap)
    assert [r.name for r in parse_delta(second.data).resources] == ["b"]
    assert stream.on_request(delta_request(EDS, unsubscribe=["a"], nonce=second.nonce), snap) == []
    # `a` changes after the unsubscribe: nothing is sent for it.
    assert stream.on_snapshot(Snapshot.build([cla("a", 9), cla("b", 2)])) == []


def test_named_subscription_answered_once_the_resource_exists() -> None:
    stream = _stream()
    assert stream.on_request(delta_request(EDS, subscribe=["a"]), Snapshot.build([])) == []
    [response] = stream.on_snapshot(Snapshot.build([cla("a", 1)]))
    assert [r.name for r in parse_delta(response.data).resources] == ["a"]


def test_nack_keeps_the_resource_out_until_it_changes() -> None:
    nacks = NackLog()
    stream = _stream(nacks)
    good = Snapshot.build([cluster("a")])
    [first] = stream.on_request(delta_request(CDS), good)
    stream.on_request(delta_request(CDS, nonce=first.nonce), good)
    bad = Snapshot.build([cluster("a", timeout="9s")])
    [pushed] = stream.on_snapshot(bad)
    assert stream.on_request(delta_request(CDS, nonce=pushed.nonce, error="bad timeout"), bad) == []
    assert nacks.total == 1 and "bad timeout" in nacks.recent[0].reason
    assert stream.known(CDS)["a"] == good.resources(CDS)["a"].version  # the client kept it
    assert stream.on_snapshot(Snapshot.build([cluster("a", timeout="9s")])) == []
    [fixed] = stream.on_snapshot(Snapshot.build([cluster("a", timeout="3s")]))
    assert [r.name for r in parse_delta(fixed.data).resources] == ["a"]


def test_a_nack_holds_back_only_its_own_stream() -> None:
    # Another client of the same group, a new sidecar, or this client reconnected: each is its
    # own stream and gets the config (Istio's rule); one client cannot withhold it from others.
    nacks = NackLog()
    bad = Snapshot.build([cluster("a", timeout="9s")])
    stream = _stream(nacks)
    [pushed] = stream.on_request(delta_request(CDS), bad)
    stream.on_request(delta_request(CDS, nonce=pushed.nonce, error="no"), bad)
    assert stream.on_snapshot(Snapshot.build([cluster("a", timeout="9s")])) == []
    [other] = DeltaStream("n2", "g", nacks).on_request(delta_request(CDS), bad)
    assert [r.name for r in parse_delta(other.data).resources] == ["a"]
    assert len(DeltaStream("n1", "g", nacks).on_request(delta_request(CDS), bad)) == 1


def test_requests_for_unserved_types_are_ignored() -> None:
    stream = _stream()
    snap = Snapshot.build([cluster("a")])
    for i in range(100):
        assert stream.on_request(delta_request(f"type.googleapis.com/x.T{i}"), snap) == []
    assert stream._types == {}


def test_system_version_is_the_type_version() -> None:
    snap = Snapshot.build([cluster("a")])
    [response] = _stream().on_request(delta_request(CDS), snap)
    assert parse_delta(response.data).system_version_info == snap.version(CDS)
