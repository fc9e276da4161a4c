"""The mesh schema's identity and transport security: `mtls`, `service_account`, `inbound`,
`allow` and `calls` become TLS contexts with SDS references, SAN checks on SPIFFE IDs, inbound
listeners and RBAC, in the groups of the sidecars that need them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format, struct_pb2

from remora.config.errors import ErrorCollector
from remora.proxy.listener_config import compile_listener
from remora.proxy.tls import secrets as tls_secrets
from remora.proxy.upstream.cluster_compiler import compile_cluster
from remora.xds import mesh, types
from remora.xds.source import (
    Identity,
    MeshConfig,
    SourceError,
    build_snapshots,
    mesh_group,
    parse_directory,
)
from tests.proxy.tls.pki import Authority

MESH = """
services:
  frontend:
    calls: [backend]
  backend:
    listen_port: 10102
    mtls: STRICT
    service_account: backend-sa
    namespace: shop
    inbound: {port: 19001, app_port: 9001}
    endpoints: [{address: 127.0.0.1, port: 19001}]
    allow: [frontend]
  legacy:
    mtls: PERMISSIVE
    inbound: {port: 19002, app_port: 9002}
    endpoints: [{address: 127.0.0.1, port: 19002}]
identities:
  frontend:
    tokens_sha256: ["%s"]
""" % ("ab" * 32)


def _config(tmp_path: Path, text: str = MESH) -> MeshConfig:
    (tmp_path / "mesh.yaml").write_text(text)
    return parse_directory(tmp_path)


def _by_name(snapshot: Any, type_url: str) -> dict[str, Any]:
    return {name: r.message for name, r in snapshot.resources(type_url).items()}


def _dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_groups_and_the_tls_they_carry(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert [(g.namespace, g.service_account) for g in config.identities] == [
        ("default", "frontend")
    ]
    snapshots = build_snapshots(config, identity=Identity("example.org", b"PEM"))
    assert sorted(snapshots) == [
        "proxyless", "sidecar", "sidecar/backend", "sidecar/frontend", "sidecar/legacy",
    ]  # fmt: skip
    frontend = snapshots["sidecar/frontend"]
    # Only the outbound listener of what it calls; every cluster; the bundle over ADS.
    assert sorted(_by_name(frontend, types.LISTENER)) == ["backend"]
    assert sorted(_by_name(frontend, types.CLUSTER)) == ["backend", "frontend", "legacy"]
    (bundle,) = _by_name(frontend, types.SECRET).values()
    assert bundle.name == "ROOTCA" and bundle.validation_context.trusted_ca.inline_bytes == b"PEM"
    cluster = _dict(_by_name(frontend, types.CLUSTER)["backend"])
    common = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["tls_certificate_sds_secret_configs"] == [{"name": "default"}]
    combined = common["combined_validation_context"]
    assert combined["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://example.org/ns/shop/sa/backend-sa"}}
    ]
    assert combined["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert "transport_socket" not in _dict(_by_name(frontend, types.CLUSTER)["frontend"])
    # gRPC's proxyless clients are not given secrets.
    assert "transport_socket" not in _dict(
        _by_name(snapshots["proxyless"], types.CLUSTER)["backend"]
    )

    backend = _by_name(snapshots["sidecar/backend"], types.LISTENER)
    assert sorted(backend) == ["backend", "frontend", "inbound|backend", "legacy"]
    inbound = _dict(backend["inbound|backend"])
    (chain,) = inbound["filter_chains"]
    downstream = chain["transport_socket"]["typed_config"]
    assert downstream["require_client_certificate"] is True
    hcm = chain["filters"][0]["typed_config"]
    rbac = hcm["http_filters"][0]["typed_config"]["rules"]["policies"]["allowed-callers"]
    assert rbac["principals"] == [
        {
            "authenticated": {
                "principal_name": {"exact": "spiffe://example.org/ns/default/sa/frontend"}
            }
        }
    ]
    app = _dict(_by_name(snapshots["sidecar/backend"], types.CLUSTER)["inbound|backend"])
    assert app["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "127.0.0.1", "port_value": 9001}
    }
    legacy = _dict(_by_name(snapshots["sidecar/legacy"], types.LISTENER)["inbound|legacy"])
    assert [c["filter_chain_match"]["transport_protocol"] for c in legacy["filter_chains"]] == [
        "tls", "raw_buffer",
    ]  # fmt: skip


def test_generated_resources_compile_with_the_secrets_they_name(tmp_path: Path) -> None:
    """What the control plane sends is what remora's own compilers accept."""
    ca = Authority()
    issued = ca.issue(uris=("spiffe://example.org/ns/default/sa/frontend",))
    snapshots = build_snapshots(_config(tmp_path), identity=Identity("example.org", ca.cert_pem))
    svid = json_format.ParseDict(
        {"name": "default", "tls_certificate": {
            "certificate_chain": {"inline_bytes": _b64(issued.cert_pem)},
            "private_key": {"inline_bytes": _b64(issued.key_pem)}}},
        secret_pb2.Secret(),
    )  # fmt: skip
    for group in ("sidecar/backend", "sidecar/legacy"):
        snapshot = snapshots[group]
        ads = _by_name(snapshot, types.SECRET)
        view = tls_secrets.SecretView(static={"default": svid}, ads=ads)
        errors = ErrorCollector()
        with tls_secrets.using(view):
            for name, message in _by_name(snapshot, types.LISTENER).items():
                assert compile_listener(message, name, errors) is not None, errors.errors
            for name, message in _by_name(snapshot, types.CLUSTER).items():
                assert compile_cluster(message, name, errors) is not None, errors.errors
        assert not errors.errors


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("mtls: STRICTER", "services.a.mtls: must be one of STRICT, PERMISSIVE, DISABLE"),
        ("service_account: Bad_Name", "services.a.service_account: must be a DNS label"),
        ("allow: [b]", "services.a.allow: callers are told apart by their mTLS identity"),
        ("{mtls: PERMISSIVE, inbound: {port: 1, app_port: 2}, allow: [b]}",
         "services.a.allow: PERMISSIVE also takes plaintext callers"),
        ("{mtls: STRICT, allow: [b]}", "services.a.allow: is enforced by the service's inbound"),
        ("{mtls: STRICT, inbound: {port: 1, app_port: 2}, allow: [nobody]}",
         "services.a.allow[0]: unknown service 'nobody'"),
        ("calls: [nobody]", "services.a.calls[0]: unknown service 'nobody'"),
        ("inbound: {port: 1}", "services.a.inbound.app_port: must be an integer in 1..65535"),
        ("inbound: {port: 1, app_port: 2, tls: x}", "services.a.inbound.tls: unknown field"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_field(tmp_path: Path, spec: str, error: str) -> None:
    if not spec.startswith("{"):
        spec = "{" + spec + "}"
    with pytest.raises(SourceError) as info:
        _config(tmp_path, f"services:\n  a: {spec}\n  b: {{}}\n")
    found = [str(e) for e in info.value.errors]
    assert any(line.startswith(f"mesh.yaml: {error}") for line in found), found


def test_mtls_without_the_ca_is_refused_naming_each_service(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        build_snapshots(_config(tmp_path))
    found = [str(e) for e in info.value.errors]
    assert found == [
        "services.backend.mtls: mTLS needs the control plane's CA to issue identities: start "
        "it with --ca-dir (or set mtls: DISABLE)",
        "services.legacy.mtls: mTLS needs the control plane's CA to issue identities: start "
        "it with --ca-dir (or set mtls: DISABLE)",
    ]


def test_a_sidecar_says_which_service_it_runs_beside() -> None:
    node = base_pb2.Node(id="x", user_agent_name="remora")
    assert mesh_group(node) == "sidecar"
    node.metadata.CopyFrom(
        struct_pb2.Struct(fields={"remora.service": struct_pb2.Value(string_value="backend")})
    )
    assert mesh_group(node) == "sidecar/backend"
    # A service without an inbound side (or one the mesh does not know) gets the sidecar group.
    from remora.xds.cache import SnapshotCache
    from remora.xds.snapshot import Snapshot

    cache = SnapshotCache(mesh_group)
    plain, own = Snapshot.build([], label="plain"), Snapshot.build([mesh._parse(
        {"name": "x"}, secret_pb2.Secret())], label="own")  # fmt: skip
    cache.set_snapshot(mesh.SIDECAR, plain)
    assert cache.get("sidecar/backend") is plain
    seen: list[str] = []
    cache.watch("sidecar/backend", lambda: seen.append("backend"))
    cache.watch("sidecar/other", lambda: seen.append("other"))
    cache.set_snapshot("sidecar/backend", own)
    assert cache.get("sidecar/backend") is own and cache.get("sidecar/other") is plain
    assert seen == ["backend"]
    cache.set_snapshot(
        mesh.SIDECAR, Snapshot.build([mesh._parse({"name": "y"}, secret_pb2.Secret())])
    )
    assert seen == ["backend", "other"]


def test_a_group_the_config_no_longer_builds_falls_back_and_its_nodes_are_told(
    tmp_path: Path,
) -> None:
    from remora.xds.cache import SnapshotCache
    from remora.xds.source import Publisher

    cache = SnapshotCache(mesh_group)
    bundle = [b"ONE"]
    publisher = Publisher(cache, identity=lambda: Identity("example.org", bundle[0]))
    publisher.publish(_config(tmp_path))
    told: list[str] = []
    cache.watch("sidecar/legacy", lambda: told.append("legacy"))
    assert "inbound|legacy" in _by_name(cache.get("sidecar/legacy"), types.LISTENER)
    without = MESH.replace("    inbound: {port: 19002, app_port: 9002}\n", "")
    changed = publisher.publish(_config(tmp_path, without))
    assert "sidecar/legacy" in changed and told == ["legacy"]
    assert cache.get("sidecar/legacy") is cache.get("sidecar")
    # A new bundle reaches every group there is.
    bundle[0] = b"TWO"
    assert sorted(publisher.refresh()) == ["proxyless", "sidecar", "sidecar/backend",
                                           "sidecar/frontend"]  # fmt: skip
