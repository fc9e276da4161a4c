"""X.509 building blocks for the CA: roots, SVID leaves, serving certificates, key checks.

Pure functions over `cryptography` objects; the authority decides what to issue, this module
knows how a well-formed certificate of each kind looks (RFC 5280 plus the X.509-SVID profile),
so strict verifiers (OpenSSL's, and `cryptography.x509.verification`) accept them.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from remora.xds.ca.errors import CaError

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
ROOT_VALIDITY = 10 * 365 * 86400
CLOCK_SKEW = 60
_EC_CURVES = ("secp256r1", "secp384r1")
MIN_RSA_BITS = 2048


def utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, lowercase hex: how the admin and the ledger name a signer."""
    return cert.fingerprint(hashes.SHA256()).hex()


def new_serial() -> int:
    """A positive random serial of at most 159 bits (RFC 5280 allows 20 octets, sign bit clear)."""
    while not (serial := secrets.randbits(159)):
        pass
    return serial


def pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def same_public_key(a: x509.Certificate, key: SigningKey) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def check_workload_key(key: object, what: str) -> None:
    """Only keys every peer can verify and nobody can factor: EC P-256/P-384 or RSA >= 2048."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_CURVES:
            raise CaError(f"{what}: EC curve {key.curve.name} not accepted (use P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CaError(f"{what}: RSA key of {key.key_size} bits, at least 2048 required")
    else:
        raise CaError(f"{what}: {type(key).__name__} not accepted (use EC P-256/P-384 or RSA)")


def _signature_hash(key: SigningKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_root(name: str, now: float) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed EC P-256 root for ten years, backdated for clock skew like the leaves."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "remora"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(utc(now - CLOCK_SKEW))
        .not_valid_after(utc(now + ROOT_VALIDITY))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    subject: x509.Name,
    san: x509.SubjectAlternativeName,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    signer: x509.Certificate,
    signer_key: SigningKey,
    not_before: int,
    not_after: int,
    client: bool,
) -> x509.Certificate:
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] * client)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.subject)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(utc(not_before))
        .not_valid_after(utc(not_after))
        # An empty subject makes the SAN the only name, which RFC 5280 then wants critical.
        .add_extension(san, critical=len(subject) == 0)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_encipherment=rsa_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
        .sign(signer_key, _signature_hash(signer_key))
    )


def make_svid(
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    spiffe_id: str,
    signer: x509.Certificate,
    signer_key: SigningKey,
    not_before: int,
    not_after: int,
) -> x509.Certificate:
    """An X.509-SVID leaf: one URI SAN, not a CA, usable for both ends of mTLS."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)])
    return _leaf(x509.Name([]), san, public_key, signer, signer_key, not_before, not_after, True)


def make_serving(
    hosts: Sequence[str],
    signer: x509.Certificate,
    signer_key: SigningKey,
    not_before: int,
    not_after: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate for the CA's own endpoint, named by DNS names and IPs."""
    if not hosts:
        raise CaError("a serving certificate needs at least one host name or address")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
    san = x509.SubjectAlternativeName(names)
    cert = _leaf(subject, san, key.public_key(), signer, signer_key, not_before, not_after, False)
    return cert, key


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
