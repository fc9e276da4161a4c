"""The workload's X.509 SVID, sans I/O: the key pair and CSR a sidecar makes, the checks on what
the CA sends back, the Secret it becomes, and when to renew it.

The private key is made here and never leaves the process: the CA sees only the CSR. The CA's
answer is not taken on trust either: the certificate must carry our public key and exactly one
`spiffe://` URI SAN, and its chain must verify against the trust bundle.
"""

from __future__ import annotations

import datetime
import json
import random
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

# The name the SVID is held under among the static secrets, as Istio's sidecars call theirs:
# mesh config names it in `tls_certificate_sds_secret_configs`.
SECRET_NAME = "default"


class SvidError(Exception):
    """The CA's answer is not a usable SVID for our key (or not an answer at all)."""


@dataclass(frozen=True, slots=True)
class Request:
    key: ec.EllipticCurvePrivateKey
    csr_pem: bytes

    @classmethod
    def new(cls) -> Request:
        key = ec.generate_private_key(ec.SECP256R1())
        # The CA decides the identity from the credential; the CSR only proves the key.
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        return cls(key, csr.public_bytes(serialization.Encoding.PEM))

    def body(self) -> bytes:
        return json.dumps({"csr": self.csr_pem.decode()}).encode()


@dataclass(frozen=True, slots=True)
class Svid:
    spiffe_id: str
    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes
    not_before: float
    not_after: float
    serial: int
    received_at: float  # the CA backdates not_before for clock skew: lifetimes count from here

    def secret(self, name: str = SECRET_NAME) -> secret_pb2.Secret:
        secret = secret_pb2.Secret(name=name)
        secret.tls_certificate.certificate_chain.inline_bytes = self.chain_pem
        secret.tls_certificate.private_key.inline_bytes = self.key_pem
        return secret

    def renew_at(self, rng: random.Random | None = None) -> float:
        """Half-life (from when it arrived), less up to 5% of the lifetime at random, so
        sidecars started together do not all come back to the CA in the same second."""
        lifetime = max(0.0, self.not_after - self.received_at)
        jitter = (rng or random).uniform(0.0, 0.05) * lifetime
        return self.received_at + lifetime / 2 - jitter


def placeholder(now: float) -> Svid:
    """A throwaway self-signed stand-in, so `--validate` can compile a config that names the
    SVID without asking the CA for one."""
    request = Request.new()
    at = datetime.datetime.fromtimestamp(now, datetime.UTC)
    spiffe_id = "spiffe://validate.invalid/ns/default/sa/placeholder"
    name = x509.Name([])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(request.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - datetime.timedelta(minutes=1))
        .not_valid_after(at + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=True,
        )
        .sign(request.key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = request.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Svid(spiffe_id, chain, key_pem, chain, now - 60, now + 3600, cert.serial_number, now)


def accept(request: Request, answer: bytes, now: float) -> Svid:
    """The SVID in the CA's JSON `answer` to `request`; raises SvidError saying what is wrong."""
    try:
        document = json.loads(answer)
    except ValueError:
        raise SvidError("the CA's answer is not JSON") from None
    if not isinstance(document, dict):
        raise SvidError("the CA's answer is not a JSON object")
    chain_pem = _text(document, "certificate_chain").encode()
    bundle_pem = _text(document, "trust_bundle").encode()
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
        roots = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise SvidError(f"the CA sent a certificate that does not parse: {exc}") from None
    leaf = chain[0]
    ours = request.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if ours != theirs:
        raise SvidError("the certificate the CA sent is not for the key this proxy made")
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise SvidError("the certificate has no subject alternative names") from None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or not uris[0].startswith("spiffe://"):
        raise SvidError(f"an SVID has exactly one spiffe:// URI SAN; this one has {uris}")
    at = datetime.datetime.fromtimestamp(now, datetime.UTC)
    try:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(roots))
            .time(at)
            .build_client_verifier()
        )
        verifier.verify(leaf, chain[1:])
    except verification.VerificationError as exc:
        raise SvidError(
            f"the certificate does not verify against the trust bundle: {exc}"
        ) from None
    key_pem = request.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Svid(
        spiffe_id=uris[0],
        chain_pem=chain_pem,
        key_pem=key_pem,
        bundle_pem=bundle_pem,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        serial=leaf.serial_number,
        received_at=now,
    )


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise SvidError(f"the CA's answer has no {key}")
    return value
