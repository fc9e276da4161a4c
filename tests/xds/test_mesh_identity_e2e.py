"""Two sidecars with SPIFFE identities from the control plane's CA, end to end, all real
processes: `remora control-plane` with its CA and a mesh where `backend` is STRICT mTLS and
admits only `frontend`; one `remora proxy` beside each service, each with an identity agent.

Requests go app -> frontend's sidecar -> mTLS -> backend's sidecar -> app. A caller with a valid
mesh identity that the rule does not admit gets 403, one without a certificate is refused at the
handshake. Under a steady stream of requests, the SVIDs (10 s lifetime) renew at half-life and
the CA's root is rotated through all three steps, with no failed request at any point.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from remora.demo.upstream import DemoUpstream
from remora.proxy.identity.agent import IdentityAgent, IdentityConfig
from remora.xds.ca.grants import new_token
from tests.proxy.procs import StderrLines, free_port, spawn_proxy

MESH = """
services:
  frontend:
    calls: [backend]
  backend:
    listen_port: {listen}
    mtls: STRICT
    inbound: {{port: {inbound}, app_port: {app}}}
    endpoints: [{{address: 127.0.0.1, port: {inbound}}}]
    allow: [frontend]
    calls: []
  intruder:
    calls: []
identities:
  frontend: {{tokens_sha256: ["{frontend}"]}}
  backend: {{tokens_sha256: ["{backend}"]}}
  intruder: {{tokens_sha256: ["{intruder}"]}}
"""


def _bootstrap(node: str, service: str, xds: int, admin: int) -> dict[str, Any]:
    return {
        "node": {"id": node, "metadata": {"remora.service": service}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"google_grpc": {"target_uri": f"127.0.0.1:{xds}"}}]},
            "lds_config": {"ads": {}},
            "cds_config": {"ads": {}},
        },
    }  # fmt: skip


async def _answers(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing answers on {port}"
            await asyncio.sleep(0.1)


async def test_two_sidecars_mtls_rbac_and_rotation_with_no_failed_request(tmp_path: Path) -> None:
    xds, plane_admin, ca = free_port(), free_port(), free_port()
    listen, inbound = free_port(), free_port()
    tokens = {name: new_token() for name in ("frontend", "backend", "intruder")}
    for name, (token, _hash) in tokens.items():
        (tmp_path / f"{name}.token").write_text(token + "\n")
    ca_dir, mesh_dir = tmp_path / "ca", tmp_path / "mesh"
    mesh_dir.mkdir()
    processes: list[asyncio.subprocess.Process] = []
    logs: dict[str, StderrLines] = {}
    async with DemoUpstream("backend") as app:
        (mesh_dir / "mesh.yaml").write_text(
            MESH.format(listen=listen, inbound=inbound, app=app.port,
                        **{name: digest for name, (_t, digest) in tokens.items()})
        )  # fmt: skip
        plane = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remora", "control-plane", "--config-dir", str(mesh_dir),
            "--xds-address", f"127.0.0.1:{xds}", "--admin-address", f"127.0.0.1:{plane_admin}",
            "--ca-dir", str(ca_dir), "--ca-address", f"127.0.0.1:{ca}",
            "--trust-domain", "example.org", "--svid-ttl", "10",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        processes.append(plane)
        logs["plane"] = StderrLines(plane)
        try:
            await _answers(ca)
            for name in ("frontend", "backend"):
                path = tmp_path / f"{name}.json"
                path.write_text(json.dumps(_bootstrap(f"{name}-1", name, xds, free_port())))
                sidecar = await spawn_proxy(
                    path, "info",
                    "--identity-ca", f"https://127.0.0.1:{ca}",
                    "--identity-token-file", str(tmp_path / f"{name}.token"),
                    "--identity-ca-bundle", str(ca_dir / "bundle.pem"),
                )  # fmt: skip
                processes.append(sidecar)
                logs[name] = StderrLines(sidecar)
            await _answers(listen)
            await _answers(inbound)
            for name in ("frontend", "backend"):
                await logs[name].wait_for(f"SVID spiffe://example.org/ns/default/sa/{name}")

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}") as client:
                response = await client.get("/")
                assert response.status_code == 200, response.text
                assert response.headers["x-upstream-name"] == "backend"
                await _intruders_are_refused(tmp_path, ca, ca_dir, inbound)

                # Rotation under load: every request must succeed throughout.
                failures: list[str] = []
                served = 0
                stop = asyncio.Event()

                async def load() -> None:
                    nonlocal served
                    fresh = httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}")
                    try:
                        while not stop.is_set():
                            # Alternate kept-alive and new connections: both must survive.
                            for http in (client, fresh):
                                try:
                                    answer = await http.get(
                                        "/",
                                        headers={"connection": "close"} if http is fresh else {},
                                    )
                                    if answer.status_code != 200:
                                        failures.append(f"{answer.status_code} {answer.text}")
                                    served += 1
                                except httpx.HTTPError as exc:
                                    failures.append(repr(exc))
                            await asyncio.sleep(0.02)
                    finally:
                        await fresh.aclose()

                loader = asyncio.create_task(load())
                for name in ("frontend", "backend"):  # half of a 10 s life
                    await logs[name].wait_for("SVID renewed", timeout=15)
                await _rotate_root(plane_admin, logs)
                # New handshakes get the SVID renewed last (open connections keep theirs).
                last = logs["backend"].lines
                serial = [line for line in last if "SVID renewed" in line][-1]
                presented = await _presented_serial(inbound, ca_dir / "bundle.pem")
                assert f"(serial {presented:x})" in serial, (presented, serial)
                await asyncio.sleep(1.0)
                stop.set()
                await loader
                assert not failures, failures[:5]
                assert served > 100
                response = await client.get("/")
                assert response.status_code == 200
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                await asyncio.wait_for(process.wait(), 15)
            for lines in logs.values():
                await lines.close()
    for name, lines in logs.items():
        assert "Traceback" not in lines.text, f"{name}:\n{lines.text}"
        assert "renewal failed" not in lines.text, f"{name}:\n{lines.text}"


async def _intruders_are_refused(tmp_path: Path, ca: int, ca_dir: Path, inbound: int) -> None:
    """A mesh identity the rule does not admit gets Envoy's 403; no certificate, no handshake."""
    agent = IdentityAgent(
        IdentityConfig(
            f"https://127.0.0.1:{ca}", tmp_path / "intruder.token", ca_dir / "bundle.pem"
        )
    )
    svid = await asyncio.to_thread(agent.obtain)
    assert svid.spiffe_id == "spiffe://example.org/ns/default/sa/intruder"
    (tmp_path / "intruder.crt").write_bytes(svid.chain_pem)
    (tmp_path / "intruder.key").write_bytes(svid.key_pem)
    context = ssl.create_default_context(cafile=str(ca_dir / "bundle.pem"))
    context.check_hostname = False  # an SVID names a workload, not a host
    context.load_cert_chain(tmp_path / "intruder.crt", tmp_path / "intruder.key")
    async with httpx.AsyncClient(verify=context) as http:
        refused = await http.get(f"https://127.0.0.1:{inbound}/")
    assert refused.status_code == 403
    assert refused.text == "RBAC: access denied"
    anonymous = ssl.create_default_context(cafile=str(ca_dir / "bundle.pem"))
    anonymous.check_hostname = False
    try:
        async with httpx.AsyncClient(verify=anonymous) as http:
            answer = await http.get(f"https://127.0.0.1:{inbound}/")
    except (httpx.HTTPError, ssl.SSLError):
        pass  # refused at the handshake (TLS 1.3 says so in an alert the client reads later)
    else:
        raise AssertionError(f"a client without a certificate got {answer.status_code}")


async def _presented_serial(port: int, bundle: Path) -> int:
    """The serial of the certificate the sidecar's inbound listener shows a new connection
    (TLS 1.3 finishes the client's side before the server asks for its certificate)."""
    context = ssl.create_default_context(cafile=str(bundle))
    context.check_hostname = False
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number


async def _rotate_root(admin: int, logs: dict[str, StderrLines]) -> None:
    """Prepare (the new root joins the bundle), activate (new SVIDs chain to it: wait for each
    sidecar to renew once more), withdraw (refused until the old root's SVIDs have expired)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}") as plane:
        assert (await plane.post("/ca/rotate/prepare")).status_code == 200
        await asyncio.sleep(1.0)  # the two-root bundle reaches the sidecars over ADS
        assert (await plane.post("/ca/rotate/activate")).status_code == 200
        renewed = {
            name: len(await logs[name].wait_for("SVID renewed")) for name in ("frontend", "backend")
        }
        for name, count in renewed.items():
            await logs[name].wait_for("SVID renewed", count + 1, timeout=15)
        deadline = time.monotonic() + 20
        while True:
            withdrawn = await plane.post("/ca/rotate/withdraw")
            if withdrawn.status_code == 200:
                break
            assert withdrawn.status_code == 409, withdrawn.text
            assert time.monotonic() < deadline, withdrawn.text
            await asyncio.sleep(0.5)
        roots = withdrawn.json()["roots"]
        assert [r["state"] for r in roots] == ["signing"]
