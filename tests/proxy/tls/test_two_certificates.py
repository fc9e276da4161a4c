"""One listener with an RSA and an ECDSA certificate, as Envoy allows: each client gets the one
it can verify; two of one key type, or two on a cluster, are refused by path."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from tests.proxy.harness import bootstrap, cluster, direct_routes, http_listener, running_proxy
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority


def _rsa_leaf(ca: Authority, directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(65537, 2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost-rsa")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = directory / "rsa.crt", directory / "rsa.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _entry(cert: Path, key: Path) -> dict[str, object]:
    return {"certificate_chain": {"filename": str(cert)}, "private_key": {"filename": str(key)}}


async def _served_key_type(port: int, ca: Path, cipher: str) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # where the cipher names the key type
    context.set_ciphers(cipher)
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    key = x509.load_der_x509_certificate(der).public_key()
    return "RSA" if isinstance(key, rsa.RSAPublicKey) else "ECDSA"


async def test_each_client_gets_the_certificate_it_can_verify(tmp_path: Path) -> None:
    ca = Authority()
    ca_path = ca.write(tmp_path)
    ec_cert, ec_key = ca.issue().write(tmp_path, "ec")
    rsa_cert, rsa_key = _rsa_leaf(ca, tmp_path)
    socket = tlsconfig.downstream()
    socket["typed_config"]["common_tls_context"]["tls_certificates"] = [
        _entry(ec_cert, ec_key),
        _entry(rsa_cert, rsa_key),
    ]
    listener = tlsconfig.with_tls(http_listener(direct_routes("ok"), name="front"), socket)
    async with running_proxy(bootstrap([listener], [])) as proxy:
        port = proxy.listener_port("front")
        assert await _served_key_type(port, ca_path, "ECDHE-RSA-AES128-GCM-SHA256") == "RSA"
        assert await _served_key_type(port, ca_path, "ECDHE-ECDSA-AES128-GCM-SHA256") == "ECDSA"


def test_two_of_one_key_type_and_two_on_a_cluster_are_refused(tmp_path: Path) -> None:
    ca = Authority()
    first = ca.issue().write(tmp_path, "one")
    second = ca.issue().write(tmp_path, "two")
    socket = tlsconfig.downstream()
    socket["typed_config"]["common_tls_context"]["tls_certificates"] = [
        _entry(*first),
        _entry(*second),
    ]
    upstream = tlsconfig.upstream(cert=first[0], key=first[1])
    upstream["typed_config"]["common_tls_context"]["tls_certificates"].append(_entry(*second))
    config = bootstrap(
        [tlsconfig.with_tls(http_listener(direct_routes("ok")), socket)],
        [cluster("up", [1], transport_socket=upstream)],
    )
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(config))
    found = "\n".join(str(e) for e in info.value.errors)
    assert "tls_certificates[1]: a second ECDSA certificate (tls_certificates[0] is one)" in found
    assert "tls_certificates: a cluster's context presents one certificate, not several" in found
