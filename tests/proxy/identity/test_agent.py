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
