"""The sidecar's side of issuance, sans I/O: what it sends and what it refuses to accept, against
answers from the real CA."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from cryptography import x509

from remora.proxy.identity.svid import Request, SvidError, accept
from remora.xds.ca.authority import CertificateAuthority
from tests.proxy.tls.pki import Authority

WEB = "spiffe://example.org/ns/default/sa/web"


def _answer(ca: CertificateAuthority, request: Request, **override: str) -> bytes:
    issued = ca.sign(request.csr_pem, WEB, ttl=600)
    body = {
        "spiffe_id": issued.spiffe_id,
        "certificate_chain": issued.chain_pem.decode(),
        "trust_bundle": issued.bundle_pem.decode(),
        "not_before": issued.not_before,
        "not_after": issued.not_after,
    }
    body.update(override)
    return json.dumps(body).encode()


def test_an_svid_for_our_key_is_accepted_and_renews_at_half_life(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path / "ca", "example.org")
    request = Request.new()
    csr = x509.load_pem_x509_csr(request.csr_pem)
    assert csr.is_signature_valid and list(csr.subject) == []
    now = time.time()
    svid = accept(request, _answer(ca, request), now)
    assert svid.spiffe_id == WEB
    assert b"PRIVATE KEY" in svid.key_pem
    secret = svid.secret()
    assert secret.name == "default"
    assert secret.tls_certificate.certificate_chain.inline_bytes == svid.chain_pem
    # Half of the life left from when it arrived (not_before is backdated), less up to 5%.
    lifetime = svid.not_after - now
    renew = svid.renew_at(random.Random(1))
    assert now + 0.45 * lifetime <= renew <= now + 0.5 * lifetime


def test_answers_that_are_not_an_svid_for_our_key_are_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path / "ca", "example.org")
    request = Request.new()
    now = time.time()
    with pytest.raises(SvidError, match="not JSON"):
        accept(request, b"<html>", now)
    with pytest.raises(SvidError, match="has no certificate_chain"):
        accept(request, b"{}", now)
    someone_else = Request.new()
    with pytest.raises(SvidError, match="not for the key this proxy made"):
        accept(request, _answer(ca, someone_else), now)
    stranger = Authority().cert_pem.decode()
    with pytest.raises(SvidError, match="does not verify against the trust bundle"):
        accept(request, _answer(ca, request, trust_bundle=stranger), now)
    with pytest.raises(SvidError, match="does not parse"):
        accept(
            request,
            _answer(
                ca,
                request,
                trust_bundle="-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n",
            ),
            now,
        )
    dns_only = Authority()
    leaf = dns_only.issue()  # a DNS and IP SAN, no spiffe:// URI
    forged = Request(leaf.key, request.csr_pem)
    with pytest.raises(SvidError, match="exactly one spiffe:// URI SAN"):
        accept(
            forged,
            json.dumps({"certificate_chain": leaf.cert_pem.decode(),
                        "trust_bundle": dns_only.cert_pem.decode()}).encode(),
            now,
        )  # fmt: skip
    with pytest.raises(SvidError, match="does not verify"):
        accept(request, _answer(ca, request), now + 3600)  # expired by then
