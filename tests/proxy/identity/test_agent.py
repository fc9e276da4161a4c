"""The identity agent against the CA's real HTTPS endpoint, and `remora proxy`'s identity flags
as a user meets them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from remora.proxy.identity.agent import IdentityAgent, IdentityConfig, IdentityError
from remora.xds.ca.api import SigningApi
from remora.xds.ca.authority import CertificateAuthority
from remora.xds.ca.grants import Grant, Grants, new_token
from remora.xds.ca.server import CaServer
from tests.proxy.tls.pki import Authority


@asynccontextmanager
async def _ca(tmp_path: Path) -> AsyncIterator[tuple[int, Path, str]]:
    """A CA granting `web` to one token: (port, bundle file, token)."""
    authority = CertificateAuthority.open(tmp_path / "ca", "example.org", svid_ttl=60)
    token, digest = new_token()
    grants = Grants([Grant("default", "web", (digest,))])
    server = CaServer(SigningApi(authority, lambda: grants, "example.org"), ["127.0.0.1"])
    port = await server.start("127.0.0.1", 0)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(authority.bundle_pem())
    try:
        yield port, bundle, token
    finally:
        await server.close()


def _agent(port: int, bundle: Path, token_file: Path) -> IdentityAgent:
    return IdentityAgent(IdentityConfig(f"https://127.0.0.1:{port}", token_file, bundle))


async def test_the_agent_gets_an_svid_and_a_new_key_each_time(tmp_path: Path) -> None:
    async with _ca(tmp_path) as (port, bundle, token):
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        agent = _agent(port, bundle, token_file)
        first = await asyncio.to_thread(agent.obtain)
        second = await asyncio.to_thread(agent.obtain)
        assert first.spiffe_id == second.spiffe_id == "spiffe://example.org/ns/default/sa/web"
        assert first.key_pem != second.key_pem and first.serial != second.serial


async def test_refusals_say_why(tmp_path: Path) -> None:
    async with _ca(tmp_path) as (port, bundle, _token):
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token")
        with pytest.raises(IdentityError, match=r"refused: 401 .*unknown or revoked token"):
            await asyncio.to_thread(_agent(port, bundle, wrong).obtain)
        stranger = Authority().write(tmp_path, "stranger")
        with pytest.raises(IdentityError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(_agent(port, stranger, wrong).obtain)
        with pytest.raises(IdentityError, match="Connection refused"):
            await asyncio.to_thread(_agent(1, bundle, wrong).obtain)


def _proxy(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bootstrap.yaml"
    config.write_text("static_resources: {}\n")
    return subprocess.run(
        [sys.executable, "-m", "remora", "proxy", "-c", str(config), "--disable-hot-restart",
         *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_identity_flags_as_a_newcomer_gets_them_wrong(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    bundle = Authority().write(tmp_path)
    only_one = _proxy(tmp_path, "--identity-ca", "https://127.0.0.1:1")
    assert only_one.returncode == 2
    assert "--identity-ca, --identity-token-file and --identity-ca-bundle go together" in (
        only_one.stderr
    )
    cases = [
        (("http://127.0.0.1:1", str(token), str(bundle)), "expected https://HOST:PORT"),
        (("https://127.0.0.1:1", str(tmp_path / "nope"), str(bundle)),
         f"--identity-token-file {tmp_path / 'nope'}: No such file or directory"),
        (("https://127.0.0.1:1", str(token), str(token)), "no PEM certificate in the file"),
        (("https://127.0.0.1:1", str(token), str(bundle)), "Connection refused"),
    ]  # fmt: skip
    for (url, token_file, bundle_file), message in cases:
        result = _proxy(
            tmp_path, "--identity-ca", url, "--identity-token-file", token_file,
            "--identity-ca-bundle", bundle_file, "--identity-wait", "0",
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "error: no workload identity: " in result.stderr and message in result.stderr, (
            result.stderr
        )
        assert "Traceback" not in result.stderr


def test_only_the_mesh_bundle_is_trusted_not_the_system_store(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t")
    agent = _agent(1, Authority().write(tmp_path), token_file)
    context = agent._context()
    assert context.cert_store_stats()["x509_ca"] == 1, context.cert_store_stats()


def test_validate_stands_in_for_the_svid_and_asks_no_ca(tmp_path: Path) -> None:
    import json

    from tests.proxy.harness import bootstrap, direct_routes, http_listener
    from tests.proxy.tls import tlsconfig

    socket = tlsconfig.downstream()
    socket["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"] = [
        {"name": "default"}
    ]
    listener = tlsconfig.with_tls(http_listener(direct_routes("ok")), socket)
    config = tmp_path / "named.json"
    config.write_text(json.dumps(bootstrap([listener], [])))
    token = tmp_path / "token"
    token.write_text("t")
    bundle = Authority().write(tmp_path)

    def validate(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "remora", "proxy", "-c", str(config), "--validate", *flags],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    plain = validate()
    assert plain.returncode == 1
    assert "'default' is the workload's SVID, which the proxy holds when started with " in (
        plain.stderr
    )
    stood_in = validate(
        "--identity-ca", "https://127.0.0.1:1", "--identity-token-file", str(token),
        "--identity-ca-bundle", str(bundle),
    )  # fmt: skip
    assert stood_in.returncode == 0, stood_in.stderr
    assert "OK" in stood_in.stdout
