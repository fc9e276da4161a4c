"""What a peer's certificate says, and the checks Envoy runs on it after the chain verifies.

OpenSSL (through Python's `ssl`) verifies the chain, validity dates and CRLs during the
handshake. Python's `ssl` has no verify callback, so the checks Envoy adds on top (the SAN
matchers, SPKI and certificate-hash pins) run here on the DER certificate once the handshake
is done, and a refused peer is disconnected before any application byte passes.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remora.proxy.http.route.matchers import EXACT, StringMatch
from remora.proxy.tls.stats import FAIL_VERIFY_CERT_HASH, FAIL_VERIFY_SAN

if TYPE_CHECKING:
    from cryptography import x509

# `cryptography` is imported where a certificate is read, not with this module: its bindings
# cost about 50 ms and 10 MB of a proxy that serves no TLS.

# SubjectAltNameMatcher.SanType values.
SAN_EMAIL, SAN_DNS, SAN_URI, SAN_IP = 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The facts of one certificate that logs, headers and the admin view name."""

    subject: str
    issuer: str
    serial: str
    uri_sans: tuple[str, ...]
    dns_sans: tuple[str, ...]
    email_sans: tuple[str, ...]
    ip_sans: tuple[str, ...]
    sha256: str  # hex of the DER certificate
    spki_sha256: str  # base64 of the SubjectPublicKeyInfo digest, as Envoy's SPKI pins
    not_before: float
    not_after: float

    def sans(self, san_type: int) -> tuple[str, ...]:
        if san_type == SAN_URI:
            return self.uri_sans
        if san_type == SAN_DNS:
            return self.dns_sans
        if san_type == SAN_EMAIL:
            return self.email_sans
        return self.ip_sans


def describe(certificate: x509.Certificate) -> PeerCertificate:
    from cryptography import utils

    # Old roots in system bundles have negative serial numbers, which cryptography warns about
    # on every read; OpenSSL accepts them, and so does this description.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", utils.CryptographyDeprecationWarning)
        return _describe(certificate)


def _describe(certificate: x509.Certificate) -> PeerCertificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = extension.value
        uri = tuple(names.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(names.get_values_for_type(x509.DNSName))
        email = tuple(names.get_values_for_type(x509.RFC822Name))
        ip = tuple(str(address) for address in names.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        uri = dns = email = ip = ()
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return PeerCertificate(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=format(certificate.serial_number, "x"),
        uri_sans=uri,
        dns_sans=dns,
        email_sans=email,
        ip_sans=ip,
        sha256=hashlib.sha256(der).hexdigest(),
        spki_sha256=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        not_before=certificate.not_valid_before_utc.timestamp(),
        not_after=certificate.not_valid_after_utc.timestamp(),
    )


def describe_der(der: bytes) -> PeerCertificate:
    from cryptography import x509

    return describe(x509.load_der_x509_certificate(der))


@dataclass(frozen=True, slots=True)
class SanMatcher:
    san_type: int
    matcher: StringMatch

    def matches(self, peer: PeerCertificate) -> bool:
        for name in peer.sans(self.san_type):
            if self.san_type == SAN_DNS and self.matcher.kind == EXACT:
                if dns_name_matches(self.matcher.value, name, self.matcher.ignore_case):
                    return True
            elif self.san_type == SAN_IP and self.matcher.kind == EXACT:
                if same_ip(self.matcher.value, name):
                    return True
            elif self.matcher.matches(name):
                return True
        return False


def dns_name_matches(wanted: str, san: str, ignore_case: bool) -> bool:
    """An exact DNS matcher also accepts a certificate's one-label wildcard (`*.example.com`
    matches `api.example.com`, not `a.b.example.com` or `example.com`)."""
    # DNS names compare case-insensitively whatever the matcher says (RFC 4343; Envoy too).
    del ignore_case
    wanted, san = wanted.lower(), san.lower()
    if san == wanted:
        return True
    if san.startswith("*.") and "." in wanted:
        label, _, rest = wanted.partition(".")
        return bool(label) and rest == san[2:]
    return False


def same_ip(wanted: str, san: str) -> bool:
    try:
        return ipaddress.ip_address(wanted) == ipaddress.ip_address(san)
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class PeerValidator:
    """Envoy's `CertificateValidationContext` checks beyond the chain. Empty lists accept all."""

    san_matchers: tuple[SanMatcher, ...] = ()
    certificate_hashes: frozenset[str] = frozenset()  # lower-case hex, no colons
    spki_hashes: frozenset[str] = frozenset()  # base64

    @property
    def checks_anything(self) -> bool:
        return bool(self.san_matchers or self.certificate_hashes or self.spki_hashes)

    def refusal(self, peer: PeerCertificate, name: str | None = None) -> str | None:
        """The stat that counts why `peer` is refused, or None when it is accepted. As in
        Envoy, the SAN matchers are checked first, and a hash or SPKI pin accepts on either.
        With `name` (a cluster's `auto_san_validation`: the request's host), the certificate
        must carry that name as a DNS or IP SAN instead of matching the SAN matchers."""
        if name is not None:
            if not (
                any(dns_name_matches(name, san, True) for san in peer.dns_sans)
                or any(same_ip(name, san) for san in peer.ip_sans)
            ):
                return FAIL_VERIFY_SAN
        elif self.san_matchers and not any(m.matches(peer) for m in self.san_matchers):
            return FAIL_VERIFY_SAN
        pinned = self.certificate_hashes or self.spki_hashes
        if pinned and not (
            peer.sha256 in self.certificate_hashes or peer.spki_sha256 in self.spki_hashes
        ):
            return FAIL_VERIFY_CERT_HASH
        return None
