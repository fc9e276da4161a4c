"""Deterministic versions and the hand-assembled wire format."""

from __future__ import annotations

import pytest

from remora.xds import types, wire
from remora.xds.snapshot import DuplicateResource, Snapshot
from remora.xds.version import resource_version, set_version
from tests.xds.helpers import cla, cluster, parse, parse_delta


def test_resource_version_is_content_hash() -> None:
    assert resource_version(cluster("a")) == resource_version(cluster("a"))
    assert resource_version(cluster("a")) != resource_version(cluster("a", timeout="2s"))


def test_map_order_does_not_change_the_version() -> None:
    one, two = cluster("a"), cluster("a")
    one.metadata.filter_metadata["x"].update({"a": 1, "b": 2})
    two.metadata.filter_metadata["x"].update({"b": 2, "a": 1})
    assert resource_version(one) == resource_version(two)


def test_set_version_ignores_order_and_sees_every_pair() -> None:
    assert set_version([("a", "1"), ("b", "2")]) == set_version([("b", "2"), ("a", "1")])
    assert set_version([("a", "1"), ("b", "2")]) != set_version([("a", "1"), ("b", "3")])
    assert set_version([("a", "1")]) != set_version([("a", "1"), ("b", "2")])


def test_snapshot_equality_and_type_versions() -> None:
    first = Snapshot.build([cluster("a"), cluster("b"), cla("a", 1)])
    again = Snapshot.build([cla("a", 1), cluster("b"), cluster("a")])
    assert first == again
    assert first.version(types.CLUSTER) == again.version(types.CLUSTER)
    changed = Snapshot.build([cluster("a"), cluster("b"), cla("a", 2)])
    assert changed != first
    assert changed.version(types.CLUSTER) == first.version(types.CLUSTER)
    assert changed.version(types.ENDPOINT) != first.version(types.ENDPOINT)


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(DuplicateResource, match="'a'"):
        Snapshot.build([cluster("a"), cluster("a", timeout="3s")])


def test_encoded_responses_parse_as_real_messages() -> None:
    snap = Snapshot.build([cluster("a"), cluster("b")])
    resources = list(snap.resources(types.CLUSTER).values())
    data = wire.sotw_response("v1", types.CLUSTER, (r.sotw_field for r in resources), "7")
    response = parse(data)
    assert response.version_info == "v1" and response.nonce == "7"
    assert response.type_url == types.CLUSTER and len(response.resources) == 2
    assert response.resources[0].type_url == types.CLUSTER
    delta = parse_delta(
        wire.delta_response("s", types.CLUSTER, (r.delta_field for r in resources), ["gone"], "8")
    )
    assert [r.name for r in delta.resources] == ["a", "b"]
    assert delta.resources[0].version == resources[0].version
    assert list(delta.removed_resources) == ["gone"] and delta.nonce == "8"


def test_varint_matches_protobuf() -> None:
    for value in (0, 1, 127, 128, 300, 2**21, 2**35):
        assert wire.varint(value) == _reference_varint(value)


def _reference_varint(value: int) -> bytes:
    from google.protobuf import wrappers_pb2

    encoded = wrappers_pb2.UInt64Value(value=value).SerializeToString()
    return encoded[1:] if value else b"\x00"
