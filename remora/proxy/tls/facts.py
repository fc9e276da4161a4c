"""What the layers above TLS may know about a connection's TLS: access logs, XFCC, RBAC.

Made once per connection when the handshake completes; the peer's certificate is parsed only
when something asks for it (a log operator, an XFCC element), since most requests never do.
"""

from __future__ import annotations

import ssl

from remora.proxy.tls.peer import PeerCertificate, describe_der


class TlsFacts:
    __slots__ = ("_peer", "alpn", "cipher", "local", "peer_der", "server_name", "version")

    def __init__(
        self,
        version: str | None,
        cipher: str | None,
        alpn: str | None,
        server_name: str | None,
        peer_der: bytes | None,
        local: PeerCertificate | None,
    ) -> None:
        self.version = version
        self.cipher = cipher
        self.alpn = alpn
        self.server_name = server_name
        self.peer_der = peer_der
        self.local = local
        self._peer: PeerCertificate | None = None

    @property
    def peer(self) -> PeerCertificate | None:
        """The peer's certificate, parsed on first use; None when it sent none."""
        if self._peer is None and self.peer_der is not None:
            self._peer = describe_der(self.peer_der)
        return self._peer

    @property
    def peer_pem(self) -> str | None:
        return None if self.peer_der is None else ssl.DER_cert_to_PEM_cert(self.peer_der)
