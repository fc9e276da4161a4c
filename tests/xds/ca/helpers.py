"""What the CA tests share: CSRs, an operator's own PKI, a settable clock, and a real mTLS
handshake on loopback between two holders of issued SVIDs."""

from __future__ import annotations

import datetime
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from remora.xds.ca.authority import IssuedSvid

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
AnyKey = PrivateKey | ed25519.Ed25519PrivateKey


class Clock:
    """A clock the test moves by hand: expiry without waiting."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


def csr_pem(key: AnyKey, cn: str = "workload", dns: str | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if dns is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class Pki:
    cert: x509.Certificate
    key: PrivateKey


def operator_ca(
    name: str,
    issuer: Pki | None = None,
    *,
    ca: bool = True,
    key_cert_sign: bool = True,
    days: float = 365,
    start_days: float = -1,
) -> Pki:
    """A certificate of the operator's own PKI, built here independently of remora's builder."""
    key = ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=start_days))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False
        )
    )
    usage = dict.fromkeys(
        ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "encipher_only", "decipher_only"], False,
    )  # fmt: skip
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=not ca, key_cert_sign=key_cert_sign and ca,
                      crl_sign=ca, **usage),
        critical=True,
    )  # fmt: skip
    return Pki(builder.sign(signer_key, hashes.SHA256()), key)


def uri_sans(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


@dataclass
class Holder:
    """A workload: its key and the SVID it was issued, and the bundle it trusts."""

    key: PrivateKey
    svid: IssuedSvid

    def context(self, side: ssl._SSLMethod, bundle: bytes) -> ssl.SSLContext:
        context = ssl.SSLContext(side)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = False  # SVIDs carry a URI SAN, not a host name
        context.load_verify_locations(cadata=bundle.decode())
        with tempfile.TemporaryDirectory() as scratch:
            chain, key = Path(scratch) / "chain.pem", Path(scratch) / "key.pem"
            chain.write_bytes(self.svid.chain_pem)
            key.write_bytes(key_pem(self.key))
            context.load_cert_chain(chain, key)
        return context


def _peer_id(sock: ssl.SSLSocket) -> str:
    peer = sock.getpeercert()
    assert peer is not None
    uris = [entry[1] for entry in peer.get("subjectAltName", ()) if entry[0] == "URI"]
    assert len(uris) == 1, peer
    return str(uris[0])


def mtls(server: Holder, client: Holder, bundle: bytes) -> tuple[str, str]:
    """A real mutual-TLS handshake on loopback, each side verifying the other against
    `bundle`: (the ID the server saw, the ID the client saw). Raises ssl.SSLError on refusal."""
    server_context = server.context(ssl.PROTOCOL_TLS_SERVER, bundle)
    client_context = client.context(ssl.PROTOCOL_TLS_CLIENT, bundle)
    seen: dict[str, str | BaseException] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls:
                    seen["server"] = _peer_id(tls)
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen["server"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_context.wrap_socket(raw) as tls,
            ):
                client_saw = _peer_id(tls)
                assert tls.recv(2) == b"ok"
        finally:
            thread.join(5)
    if isinstance(seen.get("server"), BaseException):
        raise seen["server"]  # type: ignore[misc]
    return str(seen["server"]), client_saw
