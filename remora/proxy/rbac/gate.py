"""`envoy.filters.network.rbac`: a connection's RBAC check, between the socket (or TLS) and the
connection manager or tcp_proxy. Every rule it can hold is known once the connection is made
(peer address, destination, the client certificate, SNI), so the check runs then, once, which
is what Envoy's default `ONE_TIME_ON_FIRST_BYTE` enforcement decides too."""

from __future__ import annotations

import asyncio
import logging

from remora.proxy.rbac.filter import RbacConfig, RbacStats, check
from remora.proxy.rbac.policy import Subject

log = logging.getLogger("remora.rbac")


class RbacGate(asyncio.Protocol):
    def __init__(self, app: asyncio.Protocol, config: RbacConfig, stats: RbacStats) -> None:
        self.app = app
        self.config = config
        self.stats = stats

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tls = transport.get_extra_info("tls")
        local = transport.get_extra_info("sockname") or ("", 0)
        peer = transport.get_extra_info("peername") or ("", 0)
        subject = Subject(
            str(local[0]), int(local[1]), str(peer[0]), str(peer[0]), tls.facts if tls else None
        )
        refused = check(self.config, self.stats, subject)
        if refused is not None:
            log.debug("connection from %s:%s refused: %s", peer[0], peer[1], refused)
            transport.close()
            return
        transport.set_protocol(self.app)
        self.app.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        pass  # a refused connection's last bytes, read before it closed

    def eof_received(self) -> bool:
        return False
