"""TLS stats under Envoy's names: `listener.<prefix>.ssl.*` and `cluster.<name>.ssl.*`."""

from __future__ import annotations

from remora.proxy.stats import Store

# Why a handshake or its peer check failed, as the stat that counts it.
FAIL_VERIFY_NO_CERT = "fail_verify_no_cert"
FAIL_VERIFY_ERROR = "fail_verify_error"
FAIL_VERIFY_SAN = "fail_verify_san"
FAIL_VERIFY_CERT_HASH = "fail_verify_cert_hash"


class TlsStats:
    """One set per listener or cluster; version and cipher counters are made on first use."""

    __slots__ = (
        "_prefix",
        "_store",
        "connection_error",
        "fail_verify_cert_hash",
        "fail_verify_error",
        "fail_verify_no_cert",
        "fail_verify_san",
        "handshake",
        "no_certificate",
    )

    def __init__(self, store: Store, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self.handshake = store.counter(f"{prefix}.handshake")
        self.connection_error = store.counter(f"{prefix}.connection_error")
        self.no_certificate = store.counter(f"{prefix}.no_certificate")
        self.fail_verify_no_cert = store.counter(f"{prefix}.{FAIL_VERIFY_NO_CERT}")
        self.fail_verify_error = store.counter(f"{prefix}.{FAIL_VERIFY_ERROR}")
        self.fail_verify_san = store.counter(f"{prefix}.{FAIL_VERIFY_SAN}")
        self.fail_verify_cert_hash = store.counter(f"{prefix}.{FAIL_VERIFY_CERT_HASH}")

    def failed(self, reason: str | None) -> None:
        """A handshake that did not complete, or whose peer was refused after it."""
        self.connection_error.inc()
        if reason == FAIL_VERIFY_NO_CERT:
            self.fail_verify_no_cert.inc()
        elif reason == FAIL_VERIFY_ERROR:
            self.fail_verify_error.inc()
        elif reason == FAIL_VERIFY_SAN:
            self.fail_verify_san.inc()
        elif reason == FAIL_VERIFY_CERT_HASH:
            self.fail_verify_cert_hash.inc()

    def completed(self, version: str | None, cipher: str | None, peer_certificate: bool) -> None:
        self.handshake.inc()
        if not peer_certificate:
            self.no_certificate.inc()
        if version:
            self._store.counter(f"{self._prefix}.versions.{version}").inc()
        if cipher:
            self._store.counter(f"{self._prefix}.ciphers.{cipher}").inc()
