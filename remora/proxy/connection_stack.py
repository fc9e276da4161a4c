"""The protocols a filter chain puts between an accepted socket and its connection manager or
tcp_proxy: TLS first (when the chain has a transport socket), then the network RBAC gate."""

from __future__ import annotations

import asyncio

from remora.proxy.rbac.filter import RbacConfig, RbacStats
from remora.proxy.rbac.gate import RbacGate
from remora.proxy.tls.config import TlsContext
from remora.proxy.tls.layer import TlsLayer
from remora.proxy.tls.stats import TlsStats


def stack(
    app: asyncio.Protocol,
    network_rbac: tuple[RbacConfig, RbacStats] | None,
    tls: TlsContext | None,
    tls_stats: TlsStats | None,
    where: str,
) -> asyncio.Protocol:
    """The socket's protocol for `app`: `app` itself when the chain has neither."""
    if network_rbac is not None:
        app = RbacGate(app, network_rbac[0], network_rbac[1])
    if tls is None:
        return app
    assert tls_stats is not None
    return TlsLayer(app, tls, tls_stats, where)
