"""Endpoint registration: the sans-IO registry, and the HTTP API against a running control plane
with a remora proxy (an ADS client) sending real traffic to the registered instance."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.demo.upstream import DemoUpstream
from remora.proxy.server import ProxyServer
from remora.xds import types
from remora.xds.admin import ControlPlaneAdmin
from remora.xds.cache import SnapshotCache
from remora.xds.client import AdsClient
from remora.xds.registration import (
    Registration,
    RegistrationApi,
    RegistrationError,
    Registry,
    parse_registration,
)
from remora.xds.server import XdsServer
from remora.xds.source import DirectorySource, Publisher, mesh_group
from tests.xds.test_e2e import _bootstrap, _until

WEB = "services:\n  web: {}\n  api:\n    endpoints: [{address: 10.0.0.1, port: 80}]\n"


def _reg(port: int, service: str = "web", ttl: float = 10, weight: int = 1) -> Registration:
    return Registration(service, "127.0.0.1", port, weight, "default", ttl)


def test_registry_renewal_changes_nothing_but_the_deadline() -> None:
    registry = Registry()
    assert registry.register(_reg(1), now=0) is True
    assert registry.register(_reg(1), now=5) is False  # heartbeat
    assert registry.expire(now=14.9) == []  # renewed at 5 with a 10 s TTL
    assert registry.register(_reg(1, weight=3), now=6) is True  # a changed weight is a change
    assert [r.port for r in registry.expire(now=16)] == [1]
    assert registry.endpoints() == {}


def test_registry_order_does_not_depend_on_registration_order() -> None:
    one, two = Registry(), Registry()
    for port in (3, 1, 2):
        one.register(_reg(port), now=0)
    for port in (2, 3, 1):
        two.register(_reg(port), now=0)
    assert one.endpoints() == two.endpoints()
    assert [e.port for e in one.endpoints()["web"]] == [1, 2, 3]
    assert one.deregister(("web", "127.0.0.1", 2)) and not one.deregister(("web", "127.0.0.1", 2))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "body: not JSON"),
        (b"[]", "body: must be a JSON object"),
        (b'{"address": "127.0.0.1", "port": 1}', "service: required"),
        (b'{"service": "web", "address": "example.com", "port": 1}', "address: must be an IP"),
        (
            b'{"service": "web", "address": "::1", "port": 0}',
            "port: must be an integer in 1..65535",
        ),
        (b'{"service": "web", "address": "::1", "port": 1, "ttl": -1}', "ttl: must be seconds"),
        (b'{"service": "web", "address": "::1", "port": 1, "zone": "a"}', "zone: unknown field"),
    ],
)
def test_bad_registrations_name_the_field(body: bytes, message: str) -> None:
    with pytest.raises(RegistrationError, match=message) as info:
        parse_registration(body)
    assert info.value.status == 400


def test_registered_endpoints_join_the_service_and_change_only_its_assignment(
    tmp_path: Path,
) -> None:
    (tmp_path / "mesh.yaml").write_text(WEB)
    cache = SnapshotCache(mesh_group)
    publisher = Publisher(cache)
    now = [0.0]
    api = RegistrationApi(publisher, clock=lambda: now[0])
    DirectorySource(tmp_path, cache, publisher=publisher).apply()
    before = cache.get("sidecar")
    assert before is not None
    api.register(json.dumps({"service": "web", "address": "127.0.0.1", "port": 7001,
                             "ttl": 5, "locality": "zone-b", "weight": 2}).encode())  # fmt: skip
    after = cache.get("sidecar")
    assert after is not None
    changed = {
        (t, n)
        for t in after.type_urls()
        for n, r in after.resources(t).items()
        if before.resources(t)[n].version != r.version
    }
    assert changed == {(types.ENDPOINT, "web")}
    cla = after.resources(types.ENDPOINT)["web"].message
    assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
    [locality] = cla.endpoints
    assert locality.locality.zone == "zone-b" and locality.load_balancing_weight.value == 2
    with pytest.raises(RegistrationError, match="'nope' is not defined") as info:
        api.register(b'{"service": "nope", "address": "127.0.0.1", "port": 1}')
    assert info.value.status == 404
    now[0] = 5.0
    assert len(api.expire()) == 1
    assert cache.get("sidecar") == before  # back to exactly the versions it had


@pytest.fixture
async def plane(
    tmp_path: Path,
) -> AsyncIterator[tuple[XdsServer, ControlPlaneAdmin, RegistrationApi]]:
    (tmp_path / "mesh.yaml").write_text(WEB)
    cache = SnapshotCache(mesh_group)
    xds = XdsServer(cache)
    publisher = Publisher(cache, xds.stats)
    api = RegistrationApi(publisher)
    source = DirectorySource(tmp_path, cache, publisher=publisher)
    source.apply()
    expiry = asyncio.create_task(api.expire_forever(max_sleep=0.05))
    await xds.start("127.0.0.1", 0)
    admin = ControlPlaneAdmin(cache, xds, lambda: source.last_error, None, api)
    await admin.start("127.0.0.1", 0)
    try:
        yield xds, admin, api
    finally:
        expiry.cancel()
        await admin.close()
        await xds.stop(0)


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_http_registration_reaches_a_proxy_and_expires_without_heartbeats(
    plane: tuple[XdsServer, ControlPlaneAdmin, RegistrationApi], api_type: str
) -> None:
    xds, admin, _api = plane
    server = ProxyServer(compile_bootstrap(parse_dict(_bootstrap("p1", xds.port, api_type))), 1.0)
    await server.start()
    client = AdsClient(server, f"127.0.0.1:{xds.port}", backoff_base=0.05, backoff_max=0.2)
    client.start()
    base = f"http://127.0.0.1:{admin.port}"
    try:
        async with DemoUpstream("instance-1") as up, httpx.AsyncClient(base_url=base) as http:
            await _until(
                lambda: "web" in server.clusters and any(r.name == "web" for r in server.listeners)
            )
            assert server.clusters["web"].hosts == []  # defined, but no endpoints yet
            body = {"service": "web", "address": "127.0.0.1", "port": up.port, "ttl": 1.0}
            reply = await http.post("/registrations", json=body)
            assert reply.status_code == 200 and reply.json()["status"] == "registered"
            await _until(lambda: len(server.clusters["web"].hosts) == 1)
            port = server.listener_port("web")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as traffic:
                response = await traffic.get("/")
                assert response.headers["x-upstream-name"] == "instance-1"
                # Heartbeats keep it alive well past its TTL...
                for _ in range(6):
                    await asyncio.sleep(0.2)
                    beat = await http.post("/registrations", json=body)
                    assert beat.json()["status"] == "renewed"
                    assert (await traffic.get("/")).status_code == 200
            listing = (await http.get("/registrations")).json()["registrations"]
            assert [(r["service"], r["port"]) for r in listing] == [("web", up.port)]
            # ...and without them it is dropped and the proxy's cluster empties.
            await _until(lambda: server.clusters["web"].hosts == [], timeout=3.0)
            assert (await http.get("/registrations")).json()["registrations"] == []

            # Explicit deregistration, and the API's errors.
            await http.post("/registrations", json={**body, "ttl": 30})
            await _until(lambda: len(server.clusters["web"].hosts) == 1)
            gone = await http.delete(f"/registrations/web/127.0.0.1/{up.port}")
            assert gone.status_code == 200
            await _until(lambda: server.clusters["web"].hosts == [])
            again = await http.delete(f"/registrations/web/127.0.0.1/{up.port}")
            assert again.status_code == 404 and "not registered" in again.json()["error"]
            bad = await http.post("/registrations", json={**body, "port": "x"})
            assert bad.status_code == 400 and bad.json()["error"].startswith("port:")
            unknown = await http.post("/registrations", json={**body, "service": "nope"})
            assert unknown.status_code == 404
            assert (await http.put("/registrations", json=body)).status_code == 405
            assert (await http.post("/snapshots")).status_code == 405
    finally:
        await client.stop()
        await server.close()
