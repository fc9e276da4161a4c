"""SigningApi, sans-IO: every answer it can give, and its counters and log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from remora.xds.ca.api import SigningApi
from remora.xds.ca.authority import CertificateAuthority
from remora.xds.ca.grants import Grant, Grants, new_token
from tests.xds.ca.helpers import csr_pem, ec_key, uri_sans

TOKEN, TOKEN_HASH = new_token()


@pytest.fixture
def api(tmp_path: Path) -> SigningApi:
    authority = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    grants = Grants([Grant("shop", "web", (TOKEN_HASH,))])
    return SigningApi(authority, lambda: grants, "cluster.local")


def _post(api: SigningApi, body: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return api.handle("POST", "/v1/svid", headers, body, "127.0.0.1:5555")


def _csr_body() -> bytes:
    return json.dumps({"csr": csr_pem(ec_key()).decode()}).encode()


def test_a_granted_token_gets_its_svid(api: SigningApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "remora.ca")
    status, body = _post(api, _csr_body())
    assert status == 200, body
    assert body["spiffe_id"] == "spiffe://cluster.local/ns/shop/sa/web"
    leaf = x509.load_pem_x509_certificate(body["certificate_chain"].encode())
    assert uri_sans(leaf) == [body["spiffe_id"]]
    assert body["trust_bundle"] == api.authority.bundle_pem().decode()
    assert body["not_after"] - body["not_before"] == 86400 + 60
    assert (
        f"issued spiffe://cluster.local/ns/shop/sa/web serial {leaf.serial_number:x}" in caplog.text
    )
    assert api.status()["api"] == {"issued": 1, "refused": {}}
    assert api.status()["issued_total"] == 1


def test_unauthenticated_requests_get_401_without_the_token_echoed(
    api: SigningApi, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = _post(api, _csr_body(), token=None)
    assert status == 401 and "Bearer <token> is required" in body["error"]
    status, body = api.handle("POST", "/v1/svid", {"authorization": f"Basic {TOKEN}"}, b"{}")
    assert status == 401 and "Bearer <token> is required" in body["error"]
    wrong, _ = new_token()
    unknown = _post(api, _csr_body(), token=wrong)
    hash_as_token = _post(api, _csr_body(), token=TOKEN_HASH)
    assert unknown == hash_as_token == (401, {"error": "unknown or revoked token"})
    assert wrong not in caplog.text and TOKEN_HASH not in caplog.text
    assert "refused 401 unauthenticated" in caplog.text and "from 127.0.0.1:5555" in caplog.text
    assert api.counters() == {"issued": 0, "refused": {"unauthenticated": 4}}


def test_bad_bodies_are_400_with_the_reason(api: SigningApi) -> None:
    assert _post(api, b"{not json") == (400, {"error": "body is not JSON"})
    assert _post(api, b"\xff\xfe") == (400, {"error": "body is not JSON"})
    status, body = _post(api, b'{"csr": 3}')
    assert status == 400 and body["error"] == 'body must be a JSON object {"csr": "<PEM>"}'
    assert _post(api, b"[]")[0] == 400
    status, body = _post(api, json.dumps({"csr": "garbage"}).encode())
    assert status == 400 and body["error"].startswith("CSR: not PEM")
    assert api.counters()["refused"] == {"bad_csr": 1, "bad_request": 4}


def test_methods_paths_and_sizes(api: SigningApi) -> None:
    assert api.handle("GET", "/v1/svid", {}, b"")[0] == 405
    assert api.handle("POST", "/v1/bundle", {}, b"")[0] == 405
    assert api.handle("GET", "/v1/nothing", {}, b"")[0] == 404
    assert api.handle("GET", "/", {}, b"")[0] == 404
    status, body = _post(api, b" " * (64 * 1024 + 1))
    assert status == 413 and body["error"] == "body over 65536 bytes"
    status, body = api.handle("GET", "/v1/bundle?x=1", {}, b"")
    assert status == 200 and body["trust_bundle"] == api.authority.bundle_pem().decode()
