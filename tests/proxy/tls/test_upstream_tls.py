"""TLS and mTLS from clusters: one remora sidecar to another, each side checking the other."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from remora.proxy.admin.certs import certs_json
from remora.proxy.admin.context import CertificateStatus
from remora.proxy.server import ProxyServer
from remora.proxy.tls.peer import describe
from tests.proxy.harness import (
    admin_get,
    bootstrap,
    cluster,
    demo_upstreams,
    health_flags,
    http_listener,
    routes_to,
    running_proxy,
)
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority, expired

CALLER = "spiffe://mesh.test/ns/default/sa/frontend"
SERVER = "spiffe://mesh.test/ns/default/sa/backend"


class Mesh:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = Authority()
        self.ca_path = self.ca.write(tmp_path)
        self.caller = self.ca.issue("frontend", dns=(), ips=(), uris=(CALLER,)).write(
            tmp_path, "caller"
        )
        self.server = self.ca.issue("backend", uris=(SERVER,)).write(tmp_path, "server")
        self.intruder = self.ca.issue("intruder", dns=(), ips=(), uris=("spiffe://x/y",)).write(
            tmp_path, "intruder"
        )


@asynccontextmanager
async def inbound(mesh: Mesh, upstream_port: int) -> AsyncIterator[ProxyServer]:
    """The server's sidecar: mTLS in, admitting only the caller's SPIFFE ID."""
    cert, key = mesh.server
    listener = http_listener(name="inbound")
    listener["stat_prefix"] = "inbound"
    tlsconfig.with_tls(
        listener,
        tlsconfig.downstream(
            require_client_certificate=True,
            cert=cert,
            key=key,
            ca=mesh.ca_path,
            sans=[tlsconfig.uri_san(CALLER)],
        ),
    )
    async with running_proxy(bootstrap([listener], [cluster("backend", [upstream_port])])) as p:
        yield p


def outbound_config(mesh: Mesh, port: int, client: tuple[Path, Path], expect: str) -> Any:
    cert, key = client
    mesh_cluster = cluster(
        "mesh",
        [port],
        transport_socket=tlsconfig.upstream(
            sni="backend.mesh.test",
            cert=cert,
            key=key,
            ca=mesh.ca_path,
            sans=[tlsconfig.uri_san(expect)],
        ),
    )
    return bootstrap([http_listener(routes_to("mesh"), name="outbound")], [mesh_cluster])


async def test_mtls_between_two_sidecars(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    async with demo_upstreams(1) as ups, inbound(mesh, ups[0].port) as server_side:
        config = outbound_config(mesh, server_side.listener_port("inbound"), mesh.caller, SERVER)
        async with running_proxy(config) as client_side, httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{client_side.listener_port('outbound')}/through-mtls"
            for _ in range(3):
                response = await http.get(url)
                assert response.status_code == 200, response.text
            echoed = response.json()
            assert echoed["path"] == "/through-mtls"
            # The outbound side said `http`, and the inbound side (use_remote_address unset)
            # keeps what an edge proxy already set, as Envoy does.
            assert echoed["headers"]["x-forwarded-proto"] == "http"
            store = client_side.store
            assert store.counter("cluster.mesh.ssl.handshake").value == 1  # pooled
            assert store.counter("cluster.mesh.ssl.versions.TLSv1.3").value == 1
            inbound_store = server_side.store
            assert inbound_store.counter("listener.inbound.ssl.handshake").value == 1
            assert inbound_store.counter("listener.inbound.ssl.no_certificate").value == 0


async def test_a_server_with_the_wrong_identity_is_refused(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    async with demo_upstreams(1) as ups, inbound(mesh, ups[0].port) as server_side:
        config = outbound_config(
            mesh, server_side.listener_port("inbound"), mesh.caller, "spiffe://mesh.test/other"
        )
        async with running_proxy(config) as client_side, httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{client_side.listener_port('outbound')}/"
            response = await http.get(url)
            assert response.status_code == 503
            assert "upstream connect error" in response.text
            assert "transport failure reason: TLS_error: peer certificate refused" in response.text
            assert client_side.store.counter("cluster.mesh.ssl.fail_verify_san").value == 1
            assert client_side.store.counter("cluster.mesh.upstream_cx_connect_fail").value == 1
            assert server_side.store.counter("http.inbound.downstream_rq_total").value == 0


async def test_a_caller_the_server_does_not_admit_gets_no_response(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    async with demo_upstreams(1) as ups, inbound(mesh, ups[0].port) as server_side:
        config = outbound_config(mesh, server_side.listener_port("inbound"), mesh.intruder, SERVER)
        async with running_proxy(config) as client_side, httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{client_side.listener_port('outbound')}/"
            response = await http.get(url)
            assert response.status_code == 503
            inbound_store = server_side.store
            assert inbound_store.counter("listener.inbound.ssl.fail_verify_san").value == 1
            assert inbound_store.counter("http.inbound.downstream_rq_total").value == 0


async def test_health_checks_go_through_the_clusters_tls(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    async with demo_upstreams(1) as ups, inbound(mesh, ups[0].port) as server_side:
        config = outbound_config(mesh, server_side.listener_port("inbound"), mesh.caller, SERVER)
        config["static_resources"]["clusters"][0]["health_checks"] = [
            {
                "timeout": "1s",
                "interval": "0.1s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "http_health_check": {"path": "/healthz"},
            }
        ]
        async with running_proxy(config) as client_side:
            clusters = await admin_get(client_side, "/clusters")
            assert set(health_flags(clusters, "mesh").values()) == {"healthy"}, clusters
            assert client_side.store.counter("cluster.mesh.ssl.handshake").value >= 1


async def test_admin_certs_lists_each_context_with_its_expiry(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    async with demo_upstreams(1) as ups, inbound(mesh, ups[0].port) as server_side:
        config = outbound_config(mesh, server_side.listener_port("inbound"), mesh.caller, SERVER)
        async with running_proxy(config) as client_side:
            listing = json.loads(await admin_get(client_side, "/certs"))
            (entry,) = listing["certificates"]
            assert entry["owner"] == "cluster mesh"
            (leaf,) = entry["cert_chain"]
            assert leaf["subject"] == "CN=frontend"
            assert leaf["subject_alt_names"] == [{"uri": CALLER}]
            assert leaf["days_until_expiration"] == "0"  # issued for one day
            assert entry["ca_cert"][0]["subject"] == "CN=remora test CA"
        listing = json.loads(await admin_get(server_side, "/certs"))
        assert [e["owner"] for e in listing["certificates"]] == ["listener inbound"]


def test_an_expired_certificate_counts_negative_days() -> None:
    leaf = describe(expired(Authority()).cert)
    entry = json.loads(certs_json([CertificateStatus("x", (), (leaf,))]))["certificates"][0]
    assert entry["cert_chain"][0]["days_until_expiration"] == "-1"
