"""Envoy's TLS transport socket protos -> `TlsContext` (config time only, interpreted).

Everything a context names is read, parsed and checked here, so a wrong file, a garbage PEM,
a key that is not the certificate's, an expired certificate or an unknown cipher is a config
error with its field path, and a running proxy keeps its last good config.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2

from remora.config import support
from remora.config.errors import ConfigError, ErrorCollector
from remora.proxy.http.route.matchers import compile_string_matcher
from remora.proxy.tls import secrets as tls_secrets
from remora.proxy.tls.config import DEFAULT_HANDSHAKE_TIMEOUT, TlsContext
from remora.proxy.tls.peer import PeerCertificate, PeerValidator, SanMatcher, describe

if TYPE_CHECKING:
    from cryptography import x509

TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER = "envoy.transport_sockets.raw_buffer"
_TLS = "envoy.extensions.transport_sockets.tls.v3"
# `cryptography` is imported by the functions that read certificates (about 50 ms and 10 MB):
# a config without TLS never loads it.

support.register("envoy.config.core.v3.TransportSocket", {"name", "typed_config"})
support.register("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer", set())
support.register(
    f"{_TLS}.DownstreamTlsContext", {"common_tls_context", "require_client_certificate"}
)
support.register(f"{_TLS}.UpstreamTlsContext", {"common_tls_context", "sni"})
support.register(
    f"{_TLS}.CommonTlsContext",
    {
        "tls_params",
        "tls_certificates",
        "validation_context",
        "alpn_protocols",
        "tls_certificate_sds_secret_configs",
        "validation_context_sds_secret_config",
        "combined_validation_context",
    },
)
support.register(
    f"{_TLS}.TlsParameters",
    {
        "tls_minimum_protocol_version",
        "tls_maximum_protocol_version",
        "cipher_suites",
        "ecdh_curves",
    },
)
support.register(
    f"{_TLS}.TlsCertificate", {"certificate_chain", "private_key", "password", "watched_directory"}
)
support.register("envoy.config.core.v3.WatchedDirectory", {"path"})
support.register(
    f"{_TLS}.CertificateValidationContext",
    {
        "trusted_ca",
        "system_root_certs",
        "verify_certificate_spki",
        "verify_certificate_hash",
        "match_typed_subject_alt_names",
        "crl",
        "only_verify_leaf_cert_crl",
        "watched_directory",
    },
)
support.register(f"{_TLS}.CertificateValidationContext.SystemRootCerts", set())
support.register(f"{_TLS}.SubjectAltNameMatcher", {"san_type", "matcher"})
support.register(
    "envoy.config.core.v3.DataSource",
    {"filename", "inline_bytes", "inline_string", "environment_variable"},
)

_VERSIONS = {
    common_pb2.TlsParameters.TLSv1_0: ssl.TLSVersion.TLSv1,
    common_pb2.TlsParameters.TLSv1_1: ssl.TLSVersion.TLSv1_1,
    common_pb2.TlsParameters.TLSv1_2: ssl.TLSVersion.TLSv1_2,
    common_pb2.TlsParameters.TLSv1_3: ssl.TLSVersion.TLSv1_3,
}
_HEX_HASH = re.compile(r"^[0-9a-f]{64}$")
_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", re.DOTALL)


def compile_transport_socket(
    socket: base_pb2.TransportSocket,
    path: str,
    errors: ErrorCollector,
    *,
    server_side: bool,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    default_alpn: tuple[str, ...] = (),
) -> TlsContext | None:
    """The TLS context `socket` asks for, or None for plaintext (`raw_buffer`) and for errors
    (which are added to `errors`). `default_alpn`: offered when the context names no
    `alpn_protocols` (a cluster that speaks HTTP/2 offers h2, as Envoy does)."""
    name = socket.name
    which = "DownstreamTlsContext" if server_side else "UpstreamTlsContext"
    if socket.HasField("typed_config"):
        try:
            typed = support.unpack_any(socket.typed_config, f"{path}.typed_config")
        except ConfigError as exc:
            errors.extend([exc])
            return None
        full_name = typed.DESCRIPTOR.full_name
        if full_name == "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer":
            return None
        if full_name != f"{_TLS}.{which}":
            errors.add(
                f"{path}.typed_config",
                f"expected @type type.googleapis.com/{_TLS}.{which} here, got {full_name}",
            )
            return None
    elif name == RAW_BUFFER:
        return None
    else:
        errors.add(f"{path}.typed_config", f"a transport socket {name!r} needs a typed_config")
        return None
    digest = hashlib.sha256(typed.SerializeToString(deterministic=True))
    tpath = f"{path}.typed_config"
    before = len(errors.errors)
    if isinstance(typed, tls_pb2.DownstreamTlsContext):
        common, sni = typed.common_tls_context, None
        verify_peer = typed.require_client_certificate.value
    else:
        assert isinstance(typed, tls_pb2.UpstreamTlsContext)
        common, verify_peer, sni = typed.common_tls_context, False, typed.sni or None
        if sni is not None and not _valid_server_name(sni):
            errors.add(f"{tpath}.sni", f"not a valid server name: {sni!r}")
    cpath = f"{tpath}.common_tls_context"
    known_secrets = tls_secrets.current()
    common, sds_watched, secret_refs = tls_secrets.resolve(common, cpath, errors, known_secrets)
    digest.update(common.SerializeToString(deterministic=True))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # Envoy matches SANs itself (below), never the host name
    context.verify_mode = ssl.CERT_NONE
    if server_side:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _apply_params(context, common.tls_params, f"{cpath}.tls_params", errors)
    certificates = _load_certificates(context, common, cpath, errors, digest, server_side)
    if server_side and not certificates and len(errors.errors) == before:
        errors.add(f"{cpath}.tls_certificates", "a listener's TLS context needs a certificate")
    validator = PeerValidator()
    trusted: tuple[PeerCertificate, ...] = ()
    if common.HasField("validation_context"):
        loaded = _load_validation(
            context, common.validation_context, f"{cpath}.validation_context", errors, digest
        )
        if loaded is not None:
            validator, trusted, has_roots = loaded
            if server_side:
                context.verify_mode = ssl.CERT_REQUIRED if verify_peer else ssl.CERT_OPTIONAL
            else:
                context.verify_mode = ssl.CERT_REQUIRED
                verify_peer = True
            if not has_roots and len(errors.errors) == before:
                errors.add(
                    f"{cpath}.validation_context",
                    "peer certificates are checked against trusted_ca (or system_root_certs): "
                    "set one (pins and SAN matchers alone are not supported)",
                )
    elif server_side and verify_peer:
        errors.add(
            f"{tpath}.require_client_certificate",
            "requiring a client certificate needs common_tls_context.validation_context "
            "with trusted_ca to verify it against",
        )
    alpn = tuple(common.alpn_protocols) or default_alpn
    for index, protocol in enumerate(alpn):
        if not 0 < len(protocol.encode()) < 256:
            errors.add(f"{cpath}.alpn_protocols[{index}]", "an ALPN protocol is 1 to 255 bytes")
    if alpn and len(errors.errors) == before:
        context.set_alpn_protocols(list(alpn))
    watched = _watched_directories(common, cpath, errors)
    watched += tuple(d for d in sds_watched if d not in watched)
    if len(errors.errors) > before:
        return None

    def rebuild(secrets: tls_secrets.SecretView | None = None) -> TlsContext:
        """The same context read afresh from its files (a rotated certificate), or with
        `secrets` in place of those it was compiled with (a secret delivered again); raises
        ConfigErrors, naming the fields, when what is there now is not usable."""
        again = ErrorCollector()
        view = known_secrets
        if secrets is not None:
            # A secret the new view no longer has (withdrawn while in use) keeps the value it
            # was built with, as Envoy keeps serving it; the others take their new values.
            view = tls_secrets.SecretView(
                static={**known_secrets.static, **secrets.static},
                ads={**known_secrets.ads, **secrets.ads},
            )
        with tls_secrets.using(view):
            context = compile_transport_socket(
                socket,
                path,
                again,
                server_side=server_side,
                handshake_timeout=handshake_timeout,
                default_alpn=default_alpn,
            )
        again.raise_if_any()
        assert context is not None
        return context

    return TlsContext(
        watched=watched,
        secret_refs=secret_refs,
        rebuild=rebuild,
        server_side=server_side,
        context=context,
        validator=validator,
        verify_peer=verify_peer,
        sni=sni,
        alpn=alpn,
        certificates=certificates,
        trusted_ca=trusted,
        handshake_timeout=handshake_timeout,
        fingerprint=digest.hexdigest(),
    )


def _watched_directories(
    common: tls_pb2.CommonTlsContext, path: str, errors: ErrorCollector
) -> tuple[str, ...]:
    """Envoy's `watched_directory`: when anything in it changes, the files are read again (a
    Kubernetes secret volume swaps a symlink there), and new handshakes use what they hold."""
    found: list[str] = []
    places = [
        (entry.watched_directory, f"{path}.tls_certificates[{index}].watched_directory")
        for index, entry in enumerate(common.tls_certificates)
        if entry.HasField("watched_directory")
    ]
    if common.validation_context.HasField("watched_directory"):
        places.append(
            (
                common.validation_context.watched_directory,
                f"{path}.validation_context.watched_directory",
            )
        )
    for directory, where in places:
        if not os.path.isdir(directory.path):
            errors.add(f"{where}.path", f"not a directory: {directory.path!r}")
        elif directory.path not in found:
            found.append(directory.path)
    return tuple(found)


def _valid_server_name(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(
        0 < len(label) <= 63 and re.fullmatch(r"[A-Za-z0-9_*-]+", label) for label in labels
    )


def _apply_params(
    context: ssl.SSLContext, params: common_pb2.TlsParameters, path: str, errors: ErrorCollector
) -> None:
    """Envoy's defaults: TLS 1.2 to 1.3 on both sides."""
    low = _VERSIONS.get(params.tls_minimum_protocol_version, ssl.TLSVersion.TLSv1_2)
    high = _VERSIONS.get(params.tls_maximum_protocol_version, ssl.TLSVersion.TLSv1_3)
    if low > high:
        errors.add(
            f"{path}.tls_minimum_protocol_version",
            f"the minimum ({low.name}) is above the maximum ({high.name})",
        )
        return
    context.minimum_version = low
    context.maximum_version = high
    if params.cipher_suites:
        # Envoy's BoringSSL syntax groups equal-preference suites as `[A|B]`; OpenSSL has no
        # groups, so a group becomes its members in order.
        suites = [
            name for entry in params.cipher_suites for name in entry.strip("[]").split("|") if name
        ]
        try:
            context.set_ciphers(":".join(suites))
        except ssl.SSLError:
            errors.add(f"{path}.cipher_suites", f"no cipher suite known to OpenSSL in {suites}")
    if params.ecdh_curves:
        if len(params.ecdh_curves) > 1:
            errors.add(
                f"{path}.ecdh_curves",
                "one curve can be set here (Python's ssl has no group list); "
                f"got {list(params.ecdh_curves)}",
            )
            return
        try:
            context.set_ecdh_curve(params.ecdh_curves[0])
        except ValueError:
            errors.add(f"{path}.ecdh_curves[0]", f"unknown curve {params.ecdh_curves[0]!r}")


def read_data_source(
    source: base_pb2.DataSource, path: str, errors: ErrorCollector
) -> bytes | None:
    which = source.WhichOneof("specifier")
    if which == "filename":
        try:
            with open(source.filename, "rb") as file:
                return file.read(16 * 1024 * 1024 + 1)[: 16 * 1024 * 1024]
        except OSError as exc:
            errors.add(f"{path}.filename", f"cannot read {source.filename}: {exc.strerror}")
            return None
    if which == "inline_bytes":
        return bytes(source.inline_bytes)
    if which == "inline_string":
        return str(source.inline_string).encode()
    if which == "environment_variable":
        value = os.environ.get(source.environment_variable)
        if value is None:
            errors.add(
                f"{path}.environment_variable",
                f"environment variable {source.environment_variable!r} is not set",
            )
            return None
        return value.encode()
    errors.add(path, "a data source needs one of filename, inline_bytes, inline_string")
    return None


@contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """Python's `ssl` loads keys and CRLs only from files: inline PEM goes through a file in a
    fresh 0700 directory, removed as soon as OpenSSL has read it."""
    with tempfile.TemporaryDirectory(prefix="remora-tls-") as directory:
        name = os.path.join(directory, "data.pem")
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        yield name


def _parse_certificates(data: bytes, path: str, errors: ErrorCollector) -> list[x509.Certificate]:
    from cryptography import utils, x509

    try:
        # A system bundle holds a few old roots that cryptography warns about (a negative
        # serial number); OpenSSL accepts them, so a proxy start does not print a warning each.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", utils.CryptographyDeprecationWarning)
            found = x509.load_pem_x509_certificates(data)
            for certificate in found:
                certificate.serial_number  # noqa: B018  (parsed here, under the filter)
    except ValueError as exc:
        errors.add(path, f"not a PEM certificate: {exc}")
        return []
    if not found:
        errors.add(path, "no certificate in it")
    return found


def _load_certificates(
    context: ssl.SSLContext,
    common: tls_pb2.CommonTlsContext,
    path: str,
    errors: ErrorCollector,
    digest: hashlib._Hash,
    server_side: bool,
) -> tuple[PeerCertificate, ...]:
    """The context's certificates. As in Envoy, a listener may hold one of each key type (an
    RSA and an ECDSA one: OpenSSL keeps both and picks what the client can verify); a cluster
    presents one."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if len(common.tls_certificates) > 1 and not server_side:
        errors.add(
            f"{path}.tls_certificates", "a cluster's context presents one certificate, not several"
        )
        return ()
    loaded: list[PeerCertificate] = []
    key_types: dict[str, int] = {}
    for index, entry in enumerate(common.tls_certificates):
        epath = f"{path}.tls_certificates[{index}]"
        before = len(errors.errors)
        chain_pem = key_pem = None
        if not entry.HasField("certificate_chain"):
            errors.add(f"{epath}.certificate_chain", "a certificate needs its certificate_chain")
        else:
            chain_pem = read_data_source(
                entry.certificate_chain, f"{epath}.certificate_chain", errors
            )
        if not entry.HasField("private_key"):
            errors.add(f"{epath}.private_key", "a certificate needs its private_key")
        else:
            key_pem = read_data_source(entry.private_key, f"{epath}.private_key", errors)
        password = None
        if entry.HasField("password"):
            password = read_data_source(entry.password, f"{epath}.password", errors)
        if chain_pem is None or key_pem is None or len(errors.errors) > before:
            continue
        digest.update(chain_pem)
        digest.update(key_pem)
        chain = _parse_certificates(chain_pem, f"{epath}.certificate_chain", errors)
        try:
            key = serialization.load_pem_private_key(key_pem, password)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            errors.add(f"{epath}.private_key", f"not a usable PEM private key: {reason}")
            continue
        if not chain:
            continue
        kind = "RSA" if isinstance(key, rsa.RSAPrivateKey) else "ECDSA" if isinstance(
            key, ec.EllipticCurvePrivateKey) else type(key).__name__  # fmt: skip
        if kind in key_types:
            errors.add(
                epath,
                f"a second {kind} certificate (tls_certificates[{key_types[kind]}] is one): "
                "a context holds at most one certificate of each key type",
            )
            continue
        key_types[kind] = index
        leaf = chain[0]
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
            errors.add(
                f"{epath}.private_key",
                "the private key does not match the certificate "
                f"(subject {leaf.subject.rfc4514_string()!r})",
            )
            continue
        now = datetime.datetime.now(datetime.UTC)
        if leaf.not_valid_after_utc < now:
            errors.add(
                f"{epath}.certificate_chain",
                f"the certificate expired at {leaf.not_valid_after_utc.isoformat()} "
                f"(subject {leaf.subject.rfc4514_string()!r})",
            )
            continue
        with _private_file(chain_pem) as chain_file, _private_file(key_pem) as key_file:
            try:
                context.load_cert_chain(chain_file, key_file, password)
            except ssl.SSLError as exc:
                errors.add(epath, f"OpenSSL refused the key pair: {exc.reason or exc}")
                continue
        loaded.append(describe(leaf))
    return tuple(loaded)


def _load_validation(
    context: ssl.SSLContext,
    validation: common_pb2.CertificateValidationContext,
    path: str,
    errors: ErrorCollector,
    digest: hashlib._Hash,
) -> tuple[PeerValidator, tuple[PeerCertificate, ...], bool] | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    before = len(errors.errors)
    trusted: list[PeerCertificate] = []
    has_roots = False
    if validation.HasField("trusted_ca"):
        data = read_data_source(validation.trusted_ca, f"{path}.trusted_ca", errors)
        if data is not None:
            digest.update(data)
            roots = _parse_certificates(data, f"{path}.trusted_ca", errors)
            if roots:
                pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in roots)
                context.load_verify_locations(cadata=pem.decode())
                trusted.extend(describe(root) for root in roots)
                has_roots = True
    if validation.HasField("system_root_certs"):
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        has_roots = True
    if validation.HasField("crl"):
        data = read_data_source(validation.crl, f"{path}.crl", errors)
        if data is not None:
            digest.update(data)
            try:
                crls = [x509.load_pem_x509_crl(block) for block in _CRL_BLOCK.findall(data)]
            except ValueError as exc:
                errors.add(f"{path}.crl", f"not a PEM CRL: {exc}")
                crls = []
            if crls:
                # Only the CRLs: a certificate in the same file would become a trust anchor.
                with _private_file(b"\n".join(_CRL_BLOCK.findall(data))) as crl_file:
                    context.load_verify_locations(cafile=crl_file)
                context.verify_flags |= (
                    ssl.VERIFY_CRL_CHECK_LEAF
                    if validation.only_verify_leaf_cert_crl
                    else ssl.VERIFY_CRL_CHECK_CHAIN
                )
            elif not errors.errors[before:]:
                errors.add(f"{path}.crl", "no CRL in it")
    hashes: set[str] = set()
    for index, value in enumerate(validation.verify_certificate_hash):
        normal = value.replace(":", "").lower()
        if not _HEX_HASH.match(normal):
            errors.add(
                f"{path}.verify_certificate_hash[{index}]",
                "a SHA-256 of the DER certificate in hex (64 digits, colons allowed)",
            )
        hashes.add(normal)
    spkis: set[str] = set()
    for index, value in enumerate(validation.verify_certificate_spki):
        try:
            ok = len(base64.b64decode(value, validate=True)) == 32
        except binascii.Error:
            ok = False
        if not ok:
            errors.add(
                f"{path}.verify_certificate_spki[{index}]",
                "a base64 SHA-256 of the certificate's SubjectPublicKeyInfo (44 characters)",
            )
        spkis.add(value)
    matchers: list[SanMatcher] = []
    for index, entry in enumerate(validation.match_typed_subject_alt_names):
        mpath = f"{path}.match_typed_subject_alt_names[{index}]"
        if entry.san_type not in (1, 2, 3, 4):
            errors.add(
                f"{mpath}.san_type",
                "one of DNS, URI, EMAIL, IP_ADDRESS"
                + (" (OTHER_NAME is not supported)" if entry.san_type == 5 else ""),
            )
            continue
        matcher = compile_string_matcher(entry.matcher, f"{mpath}.matcher", errors)
        if matcher is not None:
            matchers.append(SanMatcher(entry.san_type, matcher))
    if len(errors.errors) > before:
        return None
    validator = PeerValidator(tuple(matchers), frozenset(hashes), frozenset(spkis))
    return validator, tuple(trusted), has_roots


def check_secret(secret: secret_pb2.Secret, path: str, errors: ErrorCollector) -> bool:
    """Whether a delivered secret is usable on its own: its key pair loads, matches and is
    within its validity, or its trusted CAs parse. Errors name `path.tls_certificate...` or
    `path.validation_context...`, as the secret itself is laid out."""
    if secret.HasField("tls_certificate"):
        downstream = tls_pb2.DownstreamTlsContext()
        downstream.common_tls_context.tls_certificates.append(secret.tls_certificate)
        typed, server_side, inner = downstream, True, "tls_certificates[0]"
        field = "tls_certificate"
    elif secret.HasField("validation_context"):
        upstream = tls_pb2.UpstreamTlsContext()
        upstream.common_tls_context.validation_context.CopyFrom(secret.validation_context)
        typed, server_side = upstream, False
        inner = field = "validation_context"
    else:
        errors.add(path, "a secret needs a tls_certificate or a validation_context")
        return False
    socket = base_pb2.TransportSocket(name=TLS_SOCKET)
    socket.typed_config.Pack(typed)
    found = ErrorCollector()
    compile_transport_socket(socket, "", found, server_side=server_side)
    prefix = f".typed_config.common_tls_context.{inner}"
    for error in found.errors:
        where = error.path.removeprefix(prefix) if error.path.startswith(prefix) else ""
        errors.add(f"{path}.{field}{where}", error.message)
    return not found.errors
