"""SDS over the ADS stream: a listener whose TLS context names a secret `sds_config: {ads: {}}`
warms until the control plane sends it, serves it, takes a new one for new handshakes without
dropping open connections, and NACKs a bad one while the last good one keeps serving."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.proxy.server import ProxyServer
from remora.xds import types
from remora.xds.cache import DEFAULT, SnapshotCache
from remora.xds.client import AdsClient
from remora.xds.server import XdsServer
from remora.xds.snapshot import Snapshot
from tests.proxy.harness import direct_routes, http_listener
from tests.proxy.procs import free_port
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority, Issued
from tests.proxy.tls.test_sds import secret, serial_of
from tests.xds.helpers import bound, until


def _tls_listener(port: int, secret_name: str = "server") -> listener_pb2.Listener:
    listener = http_listener(direct_routes("ok"), name="front")
    listener["address"]["socket_address"]["port_value"] = port
    socket = tlsconfig.downstream()
    socket["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"] = [
        {"name": secret_name, "sds_config": {"ads": {}, "resource_api_version": "V3"}}
    ]
    listener = tlsconfig.with_tls(listener, socket)
    return json_format.ParseDict(listener, listener_pb2.Listener())


def _secret(name: str, issued: Issued, key_of: Issued | None = None) -> secret_pb2.Secret:
    body: dict[str, Any] = secret(name, issued)
    if key_of is not None:
        body["tls_certificate"]["private_key"]["inline_string"] = key_of.key_pem.decode()
    return json_format.ParseDict(body, secret_pb2.Secret())


def proxy_swaps(proxy: ProxyServer) -> int:
    return proxy.secret_swaps


@asynccontextmanager
async def _proxy_on_ads(
    api_type: str,
) -> AsyncIterator[tuple[SnapshotCache, ProxyServer, AdsClient]]:
    cache = SnapshotCache()
    xds = XdsServer(cache)
    xds_port = await xds.start("127.0.0.1", 0)
    config = {
        "node": {"id": "p1"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {"api_type": api_type, "transport_api_version": "V3",
                           "grpc_services": [{"google_grpc": {
                               "target_uri": f"127.0.0.1:{xds_port}"}}]},
            "lds_config": {"ads": {}},
        },
    }  # fmt: skip
    proxy = ProxyServer(compile_bootstrap(parse_dict(config)), 0.5)
    await proxy.start()
    client = AdsClient(proxy, f"127.0.0.1:{xds_port}", backoff_base=0.05, backoff_max=0.2)
    client.start()
    try:
        yield cache, proxy, client
    finally:
        await client.stop()
        await proxy.close()
        await xds.stop(0)


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_a_listener_warms_on_its_secret_then_follows_it(
    api_type: str, tmp_path: Path
) -> None:
    ca = Authority()
    first, second, third = ca.issue(), ca.issue(), ca.issue()
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
    port = free_port()
    listener = _tls_listener(port)
    async with _proxy_on_ads(api_type) as (cache, proxy, client):
        state = client.state
        cache.set_snapshot(DEFAULT, Snapshot.build([listener]))
        await until(lambda: state.types[types.SECRET].names == {"server"}, "SDS subscription")
        await asyncio.sleep(0.2)
        assert "front" not in bound(proxy), "a listener without its secret must warm"

        cache.set_snapshot(DEFAULT, Snapshot.build([listener, _secret("server", first)]))
        await until(lambda: "front" in bound(proxy), "the listener, once its secret is there")
        assert await serial_of(port, context) == first.cert.serial_number

        # An open connection outlives the secret it was accepted with.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        cache.set_snapshot(DEFAULT, Snapshot.build([listener, _secret("server", second)]))
        await until(lambda: proxy_swaps(proxy) >= 1, "the new secret applied")
        assert await serial_of(port, context) == second.cert.serial_number
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()

        # A key that is not the certificate's: NACKed, and the last good secret serves on.
        cache.set_snapshot(DEFAULT, Snapshot.build([listener, _secret("server", third, first)]))
        await until(lambda: state.types[types.SECRET].last_nack is not None, "the NACK")
        nack = state.types[types.SECRET].last_nack
        assert nack is not None
        assert "resources[0](server).tls_certificate" in nack.reason, nack.reason
        assert await serial_of(port, context) == second.cert.serial_number

        dump = next(d for d in client.config_dump() if d["@type"].endswith("SecretsConfigDump"))
        (entry,) = dump["dynamic_active_secrets"]
        shown = entry["secret"]["tls_certificate"]
        assert shown["private_key"] == {"inline_string": "[redacted]"}
        assert "BEGIN CERTIFICATE" in shown["certificate_chain"]["inline_string"]


def _tls_cluster(name: str) -> Any:
    from envoy.config.cluster.v3 import cluster_pb2

    socket = tlsconfig.upstream()
    socket["typed_config"]["common_tls_context"]["validation_context_sds_secret_config"] = {
        "name": "ROOTCA",
        "sds_config": {"ads": {}},
    }
    body = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": []},
        "transport_socket": socket,
    }
    return json_format.ParseDict(body, cluster_pb2.Cluster())


def _bundle(pem: str) -> secret_pb2.Secret:
    return json_format.ParseDict(
        {"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": pem}}},
        secret_pb2.Secret(),
    )


def test_a_cluster_waits_for_its_trust_bundle_and_a_garbage_bundle_is_nacked() -> None:
    """Sans-IO: the SotW client subscribes to the secret its cluster names, keeps the cluster
    out until it arrives, and refuses a bundle that is not PEM, naming the field."""
    from envoy.config.core.v3 import base_pb2

    from remora.xds.client_state import ClientState
    from remora.xds.nacks import NackLog
    from remora.xds.sotw import SotwStream
    from tests.xds.helpers import parse

    state = ClientState(base_pb2.Node(id="p1", user_agent_name="remora"))
    server = SotwStream("p1", "g", NackLog())
    snap = Snapshot.build([_tls_cluster("up"), _bundle("not a certificate")])

    def respond(request: Any) -> list[Any]:
        return [parse(r.data) for r in server.on_request(request, snap)]

    cds_request = state.initial_requests()[0]
    [cds] = respond(cds_request)
    changed, replies = state.on_response(cds)
    assert changed
    assert state.resources.desired_clusters() == {}  # warming on ROOTCA
    sds_request = next(r for r in replies if r.type_url == types.SECRET)
    assert list(sds_request.resource_names) == ["ROOTCA"]
    [sds] = respond(sds_request)
    changed, replies = state.on_response(sds)
    assert not changed
    reason = replies[0].error_detail.message
    assert reason.startswith("resources[0](ROOTCA).validation_context.trusted_ca"), reason
    assert state.resources.desired_clusters() == {}

    snap = Snapshot.build([_tls_cluster("up"), _bundle(Authority().cert_pem.decode())])
    [sds] = respond(replies[0])
    changed, _ = state.on_response(sds)
    assert changed
    assert list(state.resources.desired_clusters()) == ["up"]


def _sotw() -> tuple[Any, Any]:
    from envoy.config.core.v3 import base_pb2

    from remora.xds.client_state import ClientState
    from remora.xds.nacks import NackLog
    from remora.xds.sotw import SotwStream

    state = ClientState(base_pb2.Node(id="p1", user_agent_name="remora"))
    return state, SotwStream("p1", "g", NackLog())


def _exchange(state: Any, server: Any, snap: Snapshot, request: Any) -> tuple[bool, list[Any]]:
    from tests.xds.helpers import parse

    [response] = [parse(r.data) for r in server.on_request(request, snap)]
    return state.on_response(response)  # type: ignore[no-any-return]


def _with_svid(cluster: Any) -> Any:
    """The cluster also presents the static secret `default` (the identity agent's SVID)."""
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

    context = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(context)
    context.common_tls_context.tls_certificate_sds_secret_configs.add(name="default")
    cluster.transport_socket.typed_config.Pack(context)
    return cluster


def test_one_waiting_cluster_that_cannot_be_built_does_not_hold_the_secret_back() -> None:
    """`a` names the SVID this proxy does not have (no identity agent); `b` needs only the
    bundle. The bundle is accepted, `b` is served, `a` keeps waiting with a warning saying why."""
    state, server = _sotw()
    bundle = _bundle(Authority().cert_pem.decode())
    snap = Snapshot.build([_with_svid(_tls_cluster("a")), _tls_cluster("b"), bundle])
    changed, replies = _exchange(state, server, snap, state.initial_requests()[0])
    assert changed and state.resources.desired_clusters() == {}
    sds_request = next(r for r in replies if r.type_url == types.SECRET)
    changed, replies = _exchange(state, server, snap, sds_request)
    assert changed and not replies[0].HasField("error_detail")
    assert list(state.resources.desired_clusters()) == ["b"]
    (warning,) = state.resources.warnings
    assert warning.startswith("CDS cluster 'a' has its secrets but cannot be built"), warning
    assert "no static secret named 'default'" in warning and "--identity-ca" in warning


def test_a_cluster_waiting_for_a_secret_keeps_its_serving_versions_endpoints() -> None:
    from tests.xds.helpers import cla, cluster

    state, server = _sotw()
    snap = Snapshot.build([cluster("up"), cla("up", 1001)])
    _, replies = _exchange(state, server, snap, state.initial_requests()[0])
    eds_request = next(r for r in replies if r.type_url == types.ENDPOINT)
    _exchange(state, server, snap, eds_request)
    assert [e.port for e in state.resources.desired_clusters()["up"].endpoints] == [1001]
    # The new version of `up` names the bundle, which is not there yet.
    tls_up = cluster("up")
    tls_up.transport_socket.CopyFrom(_tls_cluster("up").transport_socket)
    snap = Snapshot.build([tls_up, cla("up", 1001)])
    changed, _ = _exchange(state, server, snap, replies[0])
    assert changed
    assert state.resources.awaiting[types.CLUSTER].keys() == {"up"}
    assert state.resources.wanted()[types.ENDPOINT] == {"up"}  # still following its endpoints
    assert "up" in state.resources.desired_clusters()  # the old version serves meanwhile


async def test_a_secret_whose_update_cannot_be_applied_does_not_serve(tmp_path: Path) -> None:
    """The SDS response wakes a listener whose port another process holds: the response is
    NACKed, and the secret it carried is not left serving either."""
    import socket

    ca = Authority()
    first, second = ca.issue(), ca.issue()
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        async with _proxy_on_ads("GRPC") as (cache, proxy, client):
            front = _tls_listener(port)
            blocked = _tls_listener(taken, secret_name="other")
            blocked.name = "blocked"
            # `blocked` waits for `other`, which is not sent yet: both names are subscribed.
            cache.set_snapshot(DEFAULT, Snapshot.build([front, blocked, _secret("server", first)]))
            await until(lambda: "front" in bound(proxy), "front")
            names = client.state.types[types.SECRET]
            await until(lambda: names.names == {"server", "other"}, "both secrets subscribed")
            # One SDS response brings a new `server` and `other`, which wakes `blocked`.
            cache.set_snapshot(
                DEFAULT,
                Snapshot.build(
                    [front, blocked, _secret("server", second), _secret("other", second)]
                ),
            )

            def nack() -> Any:
                return client.state.types[types.SECRET].last_nack

            await until(lambda: nack() is not None, "the SDS NACK")
            assert "Address already in use" in nack().reason
            assert await serial_of(port, context) == first.cert.serial_number
            assert set(proxy.ads_secrets) == {"server"}
            assert proxy.ads_secrets["server"] == _secret("server", first)
    finally:
        holder.close()


def test_delta_a_withdrawn_secret_keeps_its_cluster_serving() -> None:
    from tests.xds.test_client_delta import _Pair

    bundle = _bundle(Authority().cert_pem.decode())
    pair = _Pair(Snapshot.build([_tls_cluster("up"), bundle]))
    assert all(pair.connect())
    resources = pair.client.resources
    assert list(resources.desired_clusters()) == ["up"]
    assert resources.versions(types.SECRET).keys() == {"ROOTCA"}
    # The control plane drops the bundle: removed_resources names it, the client takes that,
    # and the cluster it was built into keeps serving.
    assert all(pair.push(Snapshot.build([_tls_cluster("up")])))
    assert resources.versions(types.SECRET) == {}
    assert list(resources.desired_clusters()) == ["up"]
    assert pair.client.types[types.SECRET].last_nack is None


_ISSUED = Authority().issue()


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    field=st.sampled_from(["certificate_chain", "private_key", "trusted_ca"]),
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=6),
    garbage=st.binary(max_size=200),
)
def test_a_hostile_secret_is_refused_by_path_and_never_raises(
    field: str, edits: list[tuple[int, int]], garbage: bytes
) -> None:
    """Mutated or random PEM in a delivered secret: refused with the field path, or (when the
    mutation missed anything that matters) accepted; never an exception."""
    from remora.config.errors import ErrorCollector
    from remora.proxy.tls.compiler import check_secret

    if field == "trusted_ca":
        source = bytearray(Authority().cert_pem)
        secret = secret_pb2.Secret(name="s")
        target = secret.validation_context.trusted_ca
    else:
        source = bytearray(_ISSUED.cert_pem if field == "certificate_chain" else _ISSUED.key_pem)
        secret = _secret("s", _ISSUED)
        target = getattr(secret.tls_certificate, field)
    for position, value in edits:
        source[position % len(source)] = value
    target.inline_bytes = bytes(source) if garbage[:1] != b"\x00" else garbage
    errors = ErrorCollector()
    accepted = check_secret(secret, "resources[0](s)", errors)
    assert accepted == (not errors.errors)
    for error in errors.errors:
        assert error.path.startswith("resources[0](s)."), error.path
