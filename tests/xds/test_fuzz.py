"""Fuzzing the control plane's inputs: config files, and what ADS clients send.

`make test` runs a short, derandomized pass so CI is repeatable. For a longer, randomized run:

    REMORA_FUZZ_EXAMPLES=5000 .venv/bin/pytest -q tests/xds/test_fuzz.py

Config files: the example mesh and a set of raw resources are mutated (a value swapped for a
hostile one, a key dropped or invented, an `@type` changed, the YAML text itself corrupted) and
loaded as the watcher would. The invariant: a load succeeds or fails with a `SourceError` whose
every line comes from a check written for it (never the backstop's `cannot load:`), quickly and
with a short message.

ADS clients: random sequences of requests (any type URL, fresh, stale or invented nonces, ACKs,
NACKs with huge reasons and node ids, subscriptions) interleaved with snapshot changes, through
the sans-IO SotW and delta stream states. The invariants: nothing raises; every response decodes
and carries a fresh nonce; a version a stream NACKed is never sent to it again; a stream's state
holds only the served types; the NACK record stays bounded.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remora.xds import types
from remora.xds.cache import DEFAULT, SnapshotCache
from remora.xds.delta import DeltaStream
from remora.xds.nacks import NackLog
from remora.xds.server import XdsServer
from remora.xds.snapshot import Snapshot
from remora.xds.sotw import SotwStream
from remora.xds.source import SourceError, build_snapshots, parse_directory
from tests.xds.helpers import cla, cluster, delta_request, request

EXAMPLES = int(os.environ.get("REMORA_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    derandomize=not EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MESH = Path(__file__).parents[2] / "examples" / "mesh"
_P = "type.googleapis.com/"

RAW: list[dict[str, Any]] = [
    {"@type": types.CLUSTER, "name": "raw", "type": "STATIC", "connect_timeout": "1s",
     "load_assignment": {"cluster_name": "raw", "endpoints": [{"lb_endpoints": [
         {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                      "port_value": 9}}}}]}]}},
    {"@type": types.ENDPOINT, "cluster_name": "raw-eds", "endpoints": []},
    {"@type": types.ROUTE, "name": "raw-routes", "virtual_hosts": [
        {"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "raw", "timeout": "2s"}}]}]},
]  # fmt: skip

HOSTILE_VALUES: list[Any] = [
    None, "", 0, -1, 2**31, 2**64, -(2**63) - 1, 1e308, float("inf"), float("nan"), True,
    "99999999999999999999s", "-1s", "1e9s", "0.0000000001s", "\x00", "é" * 5000, "*", "::1",
    "999.1.1.1", "127.0.0.1", [], {}, [[[[[[[[[[]]]]]]]]]], {"a": {"b": {"c": {}}}},
    {"@type": _P + "google.protobuf.Duration", "value": "1s"},
    {"@type": _P + "google.protobuf.Struct", "value": {"x": 1}},
    {"@type": _P + "envoy.config.cluster.v3.Cluster"}, {"@type": "nonsense"}, {"@type": 7},
]  # fmt: skip
TYPES: list[Any] = [*types.MESSAGES, _P + "google.protobuf.Duration", _P + "google.protobuf.Any",
                    _P + "envoy.config.core.v3.Node", _P + "x.Y", "", 3, None]  # fmt: skip


def _documents() -> list[tuple[str, Any]]:
    docs: list[tuple[str, Any]] = [
        (p.name, yaml.safe_load(p.read_text())) for p in sorted(MESH.glob("*.yaml"))
    ]
    docs.append(("raw.yaml", {"resources": RAW}))
    return docs


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


def _mutate(doc: Any, rng: random.Random) -> Any:
    """One structural mutation at a random place in a (copied) document."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    path = rng.choice(_paths(doc)[1:] or [()])
    if not path:
        return rng.choice(HOSTILE_VALUES)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    op = rng.randrange(5)
    if op == 0 and isinstance(parent, dict):
        del parent[last]
    elif op == 1 and isinstance(parent, dict):
        parent[rng.choice(["zz", "name", "@type", "endpoints", "weight", "port"])] = rng.choice(
            HOSTILE_VALUES
        )
    elif op == 2 and isinstance(parent, dict) and last == "@type":
        parent[last] = rng.choice(TYPES)
    elif op == 3 and isinstance(parent, list):
        parent.append(rng.choice([*HOSTILE_VALUES, rng.choice(RAW)]))
    else:
        parent[last] = rng.choice(HOSTILE_VALUES)
    return doc


def _text(doc: Any, rng: random.Random) -> bytes:
    try:
        data = yaml.safe_dump(doc, allow_unicode=True).encode()
    except (yaml.YAMLError, ValueError, OverflowError):
        data = b"services: {}\n"
    if rng.random() < 0.3:  # corrupt the text itself
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if buf:
                buf[rng.randrange(len(buf))] = rng.choice(b"&*!{}[]:-\n\t'\"%@`|>\xff\x00")
        data = bytes(buf)
    return data


@pytest.mark.timeout(0)
@FUZZ
@given(seed=st.integers(0, 2**32 - 1), mutations=st.integers(1, 4))
def test_a_mutated_source_loads_or_is_rejected_by_its_own_checks(
    tmp_path_factory: pytest.TempPathFactory, seed: int, mutations: int
) -> None:
    rng = random.Random(seed)
    directory = tmp_path_factory.mktemp("src")
    docs = _documents()
    target = rng.randrange(len(docs))
    for i, (name, doc) in enumerate(docs):
        if i == target:
            for _ in range(mutations):
                doc = _mutate(doc, rng)
            (directory / name).write_bytes(_text(doc, rng))
        else:
            (directory / name).write_text(yaml.safe_dump(doc))
    started = time.monotonic()
    try:
        build_snapshots(parse_directory(directory))
    except SourceError as exc:
        text = str(exc)
        assert text and len(text) < 50_000, text[:2000]
        assert "cannot load:" not in text, text  # the backstop, not a check, caught it
    assert time.monotonic() - started < 5


# -- ADS clients --------------------------------------------------------------------------------

SNAPSHOTS = [
    Snapshot.build([cluster("a"), cla("a", 1)]),
    Snapshot.build([cluster("a", timeout="2s"), cla("a", 2), cluster("b"), cla("b", 3)]),
    Snapshot.build([cluster("b", timeout="3s")]),
    Snapshot.build([]),
]
REQUEST_TYPES = [types.CLUSTER, types.CLUSTER, types.ENDPOINT, *types.MESSAGES, "",
                 _P + 'x.e"} 1\n#', _P + "google.protobuf.Duration"]  # fmt: skip
NAMES = ["a", "b", "*", "zz", ""]


@st.composite
def _actions(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    action = st.one_of(
        st.tuples(st.just("snapshot"), st.sampled_from([0, 0, 1, 2, 3])),
        st.tuples(
            st.just("request"),
            st.sampled_from(REQUEST_TYPES),
            st.lists(st.sampled_from(NAMES), max_size=3),
            # Mostly answers to the latest response: that is where ACK and NACK rules apply.
            st.sampled_from(["latest"] * 5 + ["stale", "invented", ""]),
            st.sampled_from([None, "bad", "bad", "x" * 100_000]),
            st.sampled_from(["n1", "n" * 10_000]),
        ),
    )
    return draw(st.lists(action, min_size=1, max_size=40))


def _check_nacks(nacks: NackLog) -> None:
    assert len(nacks.recent) <= 256
    for nack in nacks.recent:
        assert len(nack.reason) < 1100 and len(nack.node_id) < 200


@FUZZ
@given(actions=_actions())
def test_sotw_stream_holds_its_invariants_for_any_client(actions: list[tuple[Any, ...]]) -> None:
    nacks = NackLog()
    stream = SotwStream("n1", "g", nacks)
    snapshot: Snapshot | None = SNAPSHOTS[0] if actions[0][0] == "request" else None
    latest: dict[str, tuple[str, str]] = {}  # type -> (nonce, version) of the last response
    rejected: dict[str, set[str]] = {}
    nonces: list[int] = []
    for action in actions:
        if action[0] == "snapshot":
            snapshot = SNAPSHOTS[action[1]]
            responses = stream.on_snapshot(snapshot)
        else:
            _, type_url, names, nonce_kind, error, node = action
            sent = latest.get(type_url or "", ("", ""))
            nonce = {"latest": sent[0], "stale": "0", "invented": "zzz", "": ""}[nonce_kind]
            if error is not None and nonce and nonce == sent[0]:
                rejected.setdefault(type_url, set()).add(sent[1])
            req = request(type_url, names, nonce=nonce, version="v", error=error, node_id=node)
            responses = stream.on_request(req, snapshot)
        for response in responses:
            decoded = discovery_pb2.DiscoveryResponse.FromString(response.data)
            assert decoded.type_url == response.type_url in types.MESSAGES
            assert decoded.nonce == response.nonce and decoded.version_info == response.version
            assert response.version not in rejected.get(response.type_url, set())
            nonces.append(int(response.nonce))
            latest[response.type_url] = (response.nonce, response.version)
    assert nonces == sorted(set(nonces))
    assert set(stream._types) <= set(types.MESSAGES)
    _check_nacks(nacks)


@FUZZ
@given(actions=_actions(), initial=st.dictionaries(st.sampled_from(NAMES), st.text(max_size=4)))
def test_delta_stream_holds_its_invariants_for_any_client(
    actions: list[tuple[Any, ...]], initial: dict[str, str]
) -> None:
    nacks = NackLog()
    stream = DeltaStream("n1", "g", nacks)
    snapshot: Snapshot | None = SNAPSHOTS[0] if actions[0][0] == "request" else None
    latest: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    rejected: set[tuple[str, str, str]] = set()  # (type, name, version) of one-resource pushes
    nonces: list[int] = []
    for action in actions:
        if action[0] == "snapshot":
            snapshot = SNAPSHOTS[action[1]]
            responses = stream.on_snapshot(snapshot)
        else:
            _, type_url, names, nonce_kind, error, _node = action
            sent = latest.get(type_url or "", ("", ()))
            nonce = {"latest": sent[0], "stale": "0", "invented": "zzz", "": ""}[nonce_kind]
            if error is not None and nonce and nonce == sent[0] and len(sent[1]) == 1:
                rejected.add((type_url, *sent[1][0]))
            unsubscribe = names[:1] if nonce_kind == "stale" else []
            req = delta_request(type_url, names, unsubscribe, nonce=nonce, error=error,
                                initial=initial)  # fmt: skip
            responses = stream.on_request(req, snapshot)
        for response in responses:
            decoded = discovery_pb2.DeltaDiscoveryResponse.FromString(response.data)
            assert decoded.type_url == response.type_url in types.MESSAGES
            assert decoded.nonce == response.nonce
            pushed = tuple((r.name, r.version) for r in decoded.resources)
            for name, version in pushed:
                assert (response.type_url, name, version) not in rejected
            nonces.append(int(response.nonce))
            if pushed and not decoded.removed_resources:
                latest[response.type_url] = (response.nonce, pushed)
            else:
                latest[response.type_url] = (response.nonce, ())
    assert nonces == sorted(set(nonces))
    assert set(stream._types) <= set(types.MESSAGES)
    _check_nacks(nacks)


async def test_garbage_on_the_wire_leaves_the_server_serving() -> None:
    """Bytes that are no DiscoveryRequest, on every ADS method; then a real client is served."""
    cache = SnapshotCache()
    cache.set_snapshot(DEFAULT, Snapshot.build([cluster("a")]))
    server = XdsServer(cache)
    port = await server.start("127.0.0.1", 0)
    rng = random.Random(7)
    good = request(types.CLUSTER).SerializeToString()
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) for _ in range(30)]
    payloads += [good[: rng.randrange(1, len(good))] for _ in range(10)]
    service = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for method in ("StreamAggregatedResources", "DeltaAggregatedResources"):
                call_factory = channel.stream_stream(
                    service + method,
                    request_serializer=lambda b: b,
                    response_deserializer=lambda b: b,
                )
                for payload in payloads:
                    call = call_factory(iter([payload]))
                    try:
                        async for _ in call:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    call.cancel()
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(iter([request(types.CLUSTER)]))
            response = await asyncio.wait_for(call.read(), 5)
            assert [r.type_url for r in response.resources] == [types.CLUSTER]
            call.cancel()
        deadline = time.monotonic() + 5
        while server.streams:
            assert time.monotonic() < deadline, server.streams
            await asyncio.sleep(0.05)
        assert server.stats.streams_active == 0
    finally:
        await server.stop(0)
