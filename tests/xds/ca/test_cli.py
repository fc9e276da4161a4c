"""`remora control-plane` with a CA, as a process: HTTPS signing endpoint, admin /ca and the
rotation steps, `--new-token`, and the start-up errors; plus the admin's CA routes in-process."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from remora.config.errors import ErrorCollector
from remora.xds.admin import ControlPlaneAdmin
from remora.xds.ca.api import SigningApi
from remora.xds.ca.authority import CertificateAuthority
from remora.xds.ca.grants import Grants, hash_token, parse_identities
from remora.xds.cache import SnapshotCache
from remora.xds.server import XdsServer
from remora.xds.source import mesh_group
from tests.xds.ca.helpers import cert_pem, csr_pem, ec_key, key_pem, operator_ca

MESH = "services:\n  web:\n    endpoints: [{address: 127.0.0.1, port: 9000}]\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _remora(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remora", "control-plane", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _mesh(tmp_path: Path) -> Path:
    directory = tmp_path / "mesh"
    directory.mkdir()
    (directory / "mesh.yaml").write_text(MESH)
    return directory


async def _until_up(http: httpx.AsyncClient, path: str) -> httpx.Response:
    deadline = time.monotonic() + 15
    while True:
        try:
            return await http.get(path)
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


def _https(ca_dir: Path, port: int) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(ca_dir / "bundle.pem"))
    return httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context)


async def test_the_control_plane_runs_a_ca_and_rotates_its_root(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    xds, admin, ca = _free_port(), _free_port(), _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remora", "control-plane", "--config-dir", str(_mesh(tmp_path)),
        "--xds-address", f"127.0.0.1:{xds}", "--admin-address", f"127.0.0.1:{admin}",
        "--ca-dir", str(ca_dir), "--ca-address", f"127.0.0.1:{ca}",
        "--trust-domain", "example.org", "--svid-ttl", "3600",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}") as plane:
            status = (await _until_up(plane, "/ca")).json()
            assert status["trust_domain"] == "example.org" and status["svid_ttl"] == 3600
            assert [r["state"] for r in status["roots"]] == ["signing"]
            first_root = status["roots"][0]["fingerprint"]
            assert ca_dir.stat().st_mode & 0o777 == 0o700
            async with _https(ca_dir, ca) as http:
                bundle = (await http.get("/v1/bundle")).json()
                assert bundle["trust_bundle"] == (ca_dir / "bundle.pem").read_text()
                body = {"csr": csr_pem(ec_key()).decode()}
                refused = await http.post(
                    "/v1/svid", json=body, headers={"authorization": "Bearer not-a-token"}
                )
                assert refused.status_code == 401
                assert refused.json() == {"error": "unknown or revoked token"}
            counters = (await plane.get("/ca")).json()["api"]
            assert counters == {"issued": 0, "refused": {"unauthenticated": 1}}

            activate = await plane.post("/ca/rotate/activate")
            assert activate.status_code == 409
            assert activate.json()["error"] == "nothing to activate: prepare a rotation first"
            prepared = (await plane.post("/ca/rotate/prepare")).json()
            assert [r["state"] for r in prepared["roots"]] == ["signing", "prepared"]
            active = (await plane.post("/ca/rotate/activate")).json()
            assert [r["state"] for r in active["roots"]] == ["trusted", "signing"]
            withdrawn = await plane.post("/ca/rotate/withdraw")
            assert withdrawn.status_code == 200, withdrawn.text
            assert [r["fingerprint"] for r in withdrawn.json()["roots"]] != [first_root]
            # The endpoint's own certificate follows the signer: a client trusting only the new
            # root connects once the upkeep has reissued it (within about a second).
            deadline = time.monotonic() + 5
            while True:
                try:
                    async with _https(ca_dir, ca) as http:
                        assert (await http.get("/v1/bundle")).status_code == 200
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
    finally:
        process.terminate()
        _out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, err.decode()
    log = err.decode()
    assert "CA for trust domain example.org on https://127.0.0.1:" in log
    assert "refused 401 unauthenticated" in log and "not-a-token" not in log
    assert "Traceback" not in log


def test_new_token_prints_the_token_and_the_yaml_granting_its_hash() -> None:
    done = _remora("--new-token", "web", "--namespace", "shop")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and len(token) >= 43
    snippet = yaml.safe_load(done.stderr)
    errors = ErrorCollector()
    grants = parse_identities(snippet["identities"], "identities", errors)
    assert not errors.errors
    assert Grants(grants).authenticate(token) is not None
    assert snippet["identities"]["web"] == {
        "namespace": "shop",
        "tokens_sha256": [hash_token(token)],
    }
    assert token not in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ca-address", "127.0.0.1:1"], "--ca-address needs --ca-dir"),
        (["--ca-dir", "D"], "--ca-address is required with --ca-dir"),
        (["--ca-dir", "D", "--ca-address", "127.0.0.1:1", "--ca-cert", "c"],
         "--ca-cert and --ca-key go together"),
        (["--ca-dir", "D", "--ca-address", "127.0.0.1:1", "--ca-bundle", "b"],
         "--ca-bundle is only used with --ca-cert"),
        (["--ca-dir", "D", "--ca-address", "127.0.0.1:1", "--svid-ttl", "9"],
         "--svid-ttl must be between 10 and 2592000 seconds"),
        (["--ca-dir", "D", "--ca-address", "127.0.0.1:1", "--trust-domain", "Bad"],
         "--trust-domain: trust domain 'Bad' may hold only lowercase"),
        (["--namespace", "shop"], "--namespace is only used with --new-token"),
    ],
)  # fmt: skip
def test_wrong_ca_flag_combinations_are_usage_errors(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    args = [str(tmp_path / "ca") if a == "D" else a for a in args]
    done = _remora("--config-dir", str(_mesh(tmp_path)), "--xds-address", "127.0.0.1:1", *args)
    assert done.returncode == 2
    assert f"error: {expected}" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ca").exists()
    bad = _remora("--new-token", "Web_1")
    assert bad.returncode == 2 and "service account 'Web_1' must be lowercase" in bad.stderr


def test_a_taken_ca_address_and_an_unusable_operator_ca_fail_to_start(tmp_path: Path) -> None:
    mesh = str(_mesh(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _remora(
            "--config-dir", mesh, "--xds-address", f"127.0.0.1:{_free_port()}",
            "--ca-dir", str(tmp_path / "ca"), "--ca-address", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: --ca-address: cannot bind 127.0.0.1:{port}: Address already in use" in (
        done.stderr
    )
    leaf = operator_ca("not a CA", ca=False)
    (tmp_path / "op.pem").write_bytes(cert_pem(leaf.cert))
    (tmp_path / "op.key").write_bytes(key_pem(leaf.key))
    done = _remora(
        "--config-dir", mesh, "--xds-address", f"127.0.0.1:{_free_port()}",
        "--ca-dir", str(tmp_path / "op"), "--ca-address", f"127.0.0.1:{_free_port()}",
        "--ca-cert", str(tmp_path / "op.pem"), "--ca-key", str(tmp_path / "op.key"),
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: cannot start the CA: CA certificate {tmp_path / 'op.pem'}: not a CA" in (
        done.stderr
    )


def test_the_admin_ca_routes(tmp_path: Path) -> None:
    cache = SnapshotCache(mesh_group)
    without = ControlPlaneAdmin(cache, XdsServer(cache), lambda: "")
    status, _kind, body = without.handle("GET", "/ca", b"")
    assert status == 404 and "--ca-dir" in json.loads(body)["error"]
    authority = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    api = SigningApi(authority, Grants, "cluster.local")
    admin = ControlPlaneAdmin(cache, XdsServer(cache), lambda: "", None, None, api)
    authority.sign(csr_pem(ec_key()), "spiffe://cluster.local/ns/default/sa/web")
    assert admin.handle("GET", "/ca/rotate/prepare", b"")[0] == 405
    assert admin.handle("POST", "/ca", b"")[0] == 405
    assert admin.handle("POST", "/ca/rotate/sideways", b"")[0] == 404
    assert admin.handle("POST", "/ca/rotate/prepare", b"")[0] == 200
    assert admin.handle("POST", "/ca/rotate/activate", b"")[0] == 200
    status, _kind, body = admin.handle("POST", "/ca/rotate/withdraw", b"")
    assert status == 409 and "1 unexpired SVID(s)" in json.loads(body)["error"]
    status, _kind, body = admin.handle("POST", "/ca/rotate/withdraw?force=1", b"")
    assert status == 200 and [r["state"] for r in json.loads(body)["roots"]] == ["signing"]
    status, _kind, body = admin.handle("GET", "/ca", b"")
    assert json.loads(body)["issued_total"] == 1 and "api" in json.loads(body)
    assert admin.handle("GET", "/nacks?x=1", b"")[0] == 200  # other routes keep working
