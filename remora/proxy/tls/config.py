"""A compiled TLS context: the `ssl.SSLContext` to handshake with and what to check after."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from remora.proxy.tls.peer import PeerCertificate, PeerValidator

if TYPE_CHECKING:
    from remora.proxy.tls.secrets import SecretRef, SecretView

# A listener's handshake must finish this soon unless the filter chain's
# `transport_socket_connect_timeout` says otherwise: a client that opens a TLS port and never
# finishes the handshake would otherwise hold the socket until the kernel gives up.
DEFAULT_HANDSHAKE_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class TlsContext:
    """One side of TLS, as a listener's filter chain or a cluster asked for it.

    Two contexts compare by `fingerprint` (the serialized proto and the bytes of every file it
    named), so an unchanged TLS config keeps a listener or cluster unchanged on reload."""

    server_side: bool
    context: ssl.SSLContext = field(compare=False, repr=False)
    validator: PeerValidator
    # Server: `require_client_certificate`. Client: whether the server's chain is verified.
    verify_peer: bool
    sni: str | None  # client: the server name sent (`UpstreamTlsContext.sni`)
    alpn: tuple[str, ...]
    certificates: tuple[PeerCertificate, ...]  # this side's own, for the admin view
    trusted_ca: tuple[PeerCertificate, ...]
    handshake_timeout: float
    fingerprint: str
    # `watched_directory` paths, the static and ADS secrets it was built from, and how to
    # build it again when one of them changes (given the secrets to use, or those it had).
    watched: tuple[str, ...] = ()
    secret_refs: frozenset[SecretRef] = frozenset()
    rebuild: Callable[[SecretView | None], TlsContext] | None = field(
        default=None, compare=False, repr=False
    )
