"""CaServer: the signing API over real HTTPS on loopback, its limits, and its certificate's
renewal on rotation."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from remora.xds.ca import http1
from remora.xds.ca.api import SigningApi
from remora.xds.ca.authority import CertificateAuthority
from remora.xds.ca.grants import Grant, Grants, new_token
from remora.xds.ca.server import CaServer
from tests.xds.ca.helpers import csr_pem, ec_key, uri_sans

TOKEN, TOKEN_HASH = new_token()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[CaServer]:
    authority = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    grants = Grants([Grant("default", "web", (TOKEN_HASH,))])
    server = CaServer(SigningApi(authority, lambda: grants, "cluster.local"), ["127.0.0.1"])
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


def _client(server: CaServer) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(server.api.authority.directory / "bundle.pem"))
    return httpx.AsyncClient(base_url=f"https://127.0.0.1:{server.port}", verify=context)


async def test_a_workload_gets_an_svid_over_https(served: CaServer) -> None:
    async with _client(served) as http:
        bundle = (await http.get("/v1/bundle")).json()["trust_bundle"]
        assert bundle == served.api.authority.bundle_pem().decode()
        csr = csr_pem(ec_key()).decode()
        response = await http.post(
            "/v1/svid", json={"csr": csr}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["connection"] == "close"
        leaf = x509.load_pem_x509_certificate(response.json()["certificate_chain"].encode())
        assert uri_sans(leaf) == ["spiffe://cluster.local/ns/default/sa/web"]
        refused = await http.post(
            "/v1/svid", json={"csr": csr}, headers={"authorization": "Bearer no"}
        )
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")


async def _raw(server: CaServer, data: bytes) -> bytes:
    context = ssl.create_default_context(cafile=str(server.api.authority.directory / "bundle.pem"))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_oversized_heads_and_bodies_and_odd_requests_are_refused(served: CaServer) -> None:
    huge = b"GET /v1/bundle HTTP/1.1\r\nx-pad: " + b"a" * (17 * 1024) + b"\r\n\r\n"
    assert (await _raw(served, huge)).startswith(b"HTTP/1.1 431 ")
    big = b"POST /v1/svid HTTP/1.1\r\ncontent-length: 70000\r\n\r\n"
    assert (await _raw(served, big)).startswith(b"HTTP/1.1 413 ")
    chunked = b"POST /v1/svid HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    assert (await _raw(served, chunked)).startswith(b"HTTP/1.1 501 ")
    assert (await _raw(served, b"NONSENSE\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    ok = await _raw(served, b"GET /v1/bundle HTTP/1.1\r\nhost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert "BEGIN CERTIFICATE" in json.loads(ok.split(b"\r\n\r\n", 1)[1])["trust_bundle"]


async def test_a_silent_client_is_cut_off(
    served: CaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "HEAD_TIMEOUT", 0.2)
    answer = await _raw(served, b"GET /v1/bundle HTTP/1.1\r\n")
    assert answer.startswith(b"HTTP/1.1 408 ")


async def _served_issuer(server: CaServer) -> str:
    context = ssl.create_default_context(cadata=server.api.authority.bundle_pem().decode())
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


async def test_activation_reissues_the_serving_certificate(served: CaServer) -> None:
    authority = served.api.authority
    assert await _served_issuer(served) == "CN=remora root cluster.local 1,O=remora"
    assert not served.refresh_if_due()
    authority.prepare_rotation()
    assert not served.refresh_if_due()  # preparing changes nothing that signs
    authority.activate_rotation()
    assert served.refresh_if_due()
    assert await _served_issuer(served) == "CN=remora root cluster.local 2,O=remora"
    assert served.refresh_if_due(now=served.renew_at + 1)  # and before it expires
    assert not served.refresh_if_due()


def test_a_content_length_of_other_digits_and_a_head_request() -> None:
    with pytest.raises(http1.HttpError, match="content-length must be a decimal number"):
        http1.body_length({"content-length": "\u00b2"}, 1024)  # "²".isdigit() is True
    full = http1.encode_response(200, {"a": 1})
    head = http1.encode_response(200, {"a": 1}, head=True)
    assert full.startswith(head) and head.endswith(b"\r\n\r\n") and len(full) > len(head)
