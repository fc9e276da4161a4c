"""State-of-the-world protocol rules, one test each, against the sans-IO stream."""

from __future__ import annotations

from remora.xds import types
from remora.xds.nacks import NackLog
from remora.xds.snapshot import Snapshot
from remora.xds.sotw import SotwStream
from tests.xds.helpers import cla, cluster, names_in, parse, request

CDS, EDS = types.CLUSTER, types.ENDPOINT


def _stream(nacks: NackLog | None = None) -> SotwStream:
    return SotwStream("n1", "g", nacks or NackLog())


def test_first_request_without_names_is_wildcard_and_gets_the_full_set() -> None:
    snap = Snapshot.build([cluster("a"), cluster("b")])
    [response] = _stream().on_request(request(CDS), snap)
    parsed = parse(response.data)
    assert names_in(parsed) == ["a", "b"]
    assert parsed.version_info == snap.version(CDS) and parsed.nonce == response.nonce


def test_sotw_full_set_deletion_for_cds() -> None:
    stream = _stream()
    [first] = stream.on_request(request(CDS), Snapshot.build([cluster("a"), cluster("b")]))
    stream.on_request(request(CDS, nonce=first.nonce, version=first.version), None)
    [second] = stream.on_snapshot(Snapshot.build([cluster("a")]))
    # `b` is deleted by its absence from the full set.
    assert names_in(parse(second.data)) == ["a"]


def test_identical_snapshot_pushes_nothing() -> None:
    stream = _stream()
    snap = Snapshot.build([cluster("a")])
    [first] = stream.on_request(request(CDS), snap)
    assert stream.on_request(request(CDS, nonce=first.nonce, version=first.version), snap) == []
    assert stream.on_snapshot(Snapshot.build([cluster("a")])) == []
    assert stream.acked(CDS) == first.version


def test_stale_nonce_is_ignored() -> None:
    stream = _stream()
    [first] = stream.on_request(request(CDS), Snapshot.build([cluster("a")]))
    [second] = stream.on_snapshot(Snapshot.build([cluster("a"), cluster("b")]))
    assert second.nonce != first.nonce
    # An ACK of the older response, even with new names or an error, changes nothing.
    stale = request(CDS, nonce=first.nonce, version=first.version, error="late")
    nacks = stream.nacks
    assert stream.on_request(stale, Snapshot.build([cluster("c")])) == []
    assert nacks.total == 0 and stream.acked(CDS) == ""


def test_nack_is_detected_by_error_detail_and_the_version_is_never_resent() -> None:
    nacks = NackLog()
    stream = _stream(nacks)
    good = Snapshot.build([cluster("a")])
    [first] = stream.on_request(request(CDS), good)
    stream.on_request(request(CDS, nonce=first.nonce, version=first.version), good)
    bad = Snapshot.build([cluster("a", timeout="9s")])
    [pushed] = stream.on_snapshot(bad)
    # The NACK's version_info is the last good version, the same as an ACK of `first` would be.
    nack = request(CDS, nonce=pushed.nonce, version=first.version, error="timeout too long")
    assert stream.on_request(nack, bad) == []
    assert nacks.total == 1 and nacks.recent[0].reason == "timeout too long"
    assert nacks.recent[0].version == pushed.version
    assert nacks.recent[0].last_good == first.version
    assert stream.acked(CDS) == first.version
    # Re-setting the rejected config sends nothing on this stream.
    assert stream.on_snapshot(Snapshot.build([cluster("a", timeout="9s")])) == []
    # A changed config is sent again.
    [fixed] = stream.on_snapshot(Snapshot.build([cluster("a", timeout="3s")]))
    assert fixed.version not in (pushed.version, first.version)


def test_nack_of_one_group_does_not_block_another() -> None:
    nacks = NackLog()
    snap = Snapshot.build([cluster("a")])
    stream = SotwStream("n1", "g1", nacks)
    [first] = stream.on_request(request(CDS), snap)
    stream.on_request(request(CDS, nonce=first.nonce, error="no"), snap)
    assert len(SotwStream("n2", "g2", nacks).on_request(request(CDS), snap)) == 1


def test_a_nack_holds_back_only_its_own_stream() -> None:
    # A new sidecar in the same group, or this client reconnected, gets the config (Istio's
    # rule): a client can keep config off itself, never off the others.
    nacks = NackLog()
    bad = Snapshot.build([cluster("a", timeout="9s")])
    stream = SotwStream("n1", "g", nacks)
    [first] = stream.on_request(request(CDS), bad)
    assert stream.on_request(request(CDS, nonce=first.nonce, error="no"), bad) == []
    assert stream.on_snapshot(Snapshot.build([cluster("a", timeout="9s")])) == []
    [other] = SotwStream("n2", "g", nacks).on_request(request(CDS), bad)
    assert other.version == first.version
    assert len(SotwStream("n1", "g", nacks).on_request(request(CDS), bad)) == 1


def test_nack_reasons_and_ids_are_clipped_and_the_log_is_bounded() -> None:
    nacks = NackLog()
    snap = Snapshot.build([cluster("a")])
    for _ in range(300):
        stream = SotwStream("n" * 100_000, "g", nacks)
        [first] = stream.on_request(request(CDS), snap)
        stream.on_request(request(CDS, nonce=first.nonce, error="x" * (1 << 20)), snap)
    assert nacks.total == 300 and len(nacks.recent) == 256
    kept = nacks.recent[-1]
    assert len(kept.reason) < 1100 and kept.reason.endswith("more characters)")
    assert len(kept.node_id) < 200


def test_requests_for_unserved_types_are_ignored() -> None:
    stream = _stream()
    snap = Snapshot.build([cluster("a")])
    for i in range(100):
        assert stream.on_request(request(f"type.googleapis.com/x.T{i}"), snap) == []
    assert stream._types == {}


def test_eds_by_name_is_answered_as_soon_as_the_named_resources_exist() -> None:
    stream = _stream()
    empty = Snapshot.build([cluster("a")])
    # Nothing for `a` yet: no response (absence is not deletion for EDS).
    assert stream.on_request(request(EDS, ["a"]), empty) == []
    [response] = stream.on_snapshot(Snapshot.build([cluster("a"), cla("a", 1)]))
    assert names_in(parse(response.data)) == ["a"]


def test_eds_sends_only_the_requested_names_and_answers_partial_sets() -> None:
    snap = Snapshot.build([cla("a", 1), cla("b", 2), cla("c", 3)])
    stream = _stream()
    [response] = stream.on_request(request(EDS, ["a", "zz"]), snap)
    assert names_in(parse(response.data)) == ["a"]
    # Widening the subscription (same nonce, an ACK) brings the new name.
    ack = request(EDS, ["a", "b"], nonce=response.nonce, version=response.version)
    [wider] = stream.on_request(ack, snap)
    assert names_in(parse(wider.data)) == ["a", "b"]


def test_eds_requests_are_not_stalled_by_other_types() -> None:
    # go-control-plane's ADS mode waits for every type; here EDS alone is answered.
    snap = Snapshot.build([cluster("a"), cla("a", 1)])
    assert len(_stream().on_request(request(EDS, ["a"]), snap)) == 1


def test_star_name_is_wildcard_and_rollback_is_pushed() -> None:
    stream = _stream()
    one, two = Snapshot.build([cluster("a")]), Snapshot.build([cluster("b")])
    [first] = stream.on_request(request(CDS, ["*"]), one)
    [second] = stream.on_snapshot(two)
    [third] = stream.on_snapshot(one)
    assert third.version == first.version != second.version


def test_first_request_of_a_reconnected_client_is_answered() -> None:
    snap = Snapshot.build([cluster("a")])
    version = snap.version(CDS)
    [response] = _stream().on_request(request(CDS, version=version, nonce="stale-42"), snap)
    assert response.version == version


def test_no_snapshot_means_no_response() -> None:
    assert _stream().on_request(request(CDS), None) == []


def test_snapshot_pushes_follow_envoy_order() -> None:
    stream = _stream()
    stream.on_request(request(EDS, ["a"]), None)
    stream.on_request(request(CDS), None)
    responses = stream.on_snapshot(Snapshot.build([cluster("a"), cla("a", 1)]))
    assert [r.type_url for r in responses] == [CDS, EDS]
