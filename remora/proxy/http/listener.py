"""The HTTP side of a listener: the state its connections share, and the server socket."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from remora.proxy.connection_stack import stack
from remora.proxy.http.config import CODEC_HTTP2, HcmConfig
from remora.proxy.http.downstream import DownstreamConnection
from remora.proxy.http.h2_downstream import H2DownstreamConnection
from remora.proxy.http.h2_stats import Http2Stats
from remora.proxy.http.hcm_stats import HcmStats
from remora.proxy.listener_stats import ListenerStats
from remora.proxy.rbac.filter import RbacConfig, RbacStats
from remora.proxy.stats import Store
from remora.proxy.tls.config import TlsContext
from remora.proxy.tls.stats import TlsStats

if TYPE_CHECKING:
    from remora.proxy.http.stream import DownstreamSession
    from remora.proxy.upstream.cluster import Cluster


def rbac_stats_for(store: Store, hcm: HcmConfig) -> RbacStats | None:
    """`http.<stat_prefix>.rbac.*`, only when the connection manager has the RBAC filter."""
    if hcm.rbac is None:
        return None
    return RbacStats(store, f"http.{hcm.stat_prefix}.", hcm.rbac)


class HttpListener:
    """What every connection of one HTTP listener reads: config, clusters, stats, drain state."""

    def __init__(
        self,
        hcm: HcmConfig,
        clusters: Mapping[str, Cluster],
        store: Store,
        listener_stats: ListenerStats,
        buffer_limit: int,
        tls: TlsContext | None = None,
        tls_stats: TlsStats | None = None,
        name: str = "",
    ) -> None:
        self.name = name
        self.hcm = hcm
        self.clusters = clusters
        self.store = store  # for Wasm filters, which bind their stats on first use
        self.stats = HcmStats.create(store, hcm.stat_prefix)
        self.h2_stats = Http2Stats.create(store)
        self.rbac_stats = rbac_stats_for(store, hcm)
        self.listener_stats = listener_stats
        self.buffer_limit = buffer_limit
        self.connections: set[DownstreamSession] = set()
        self.draining = False
        self.tls = tls
        self.tls_stats = tls_stats
        # envoy.filters.network.rbac on this chain: its rules and stats (None: no filter).
        self.network_rbac: tuple[RbacConfig, RbacStats] | None = None
        self.scheme = "http" if tls is None else "https"

    def protocol_factory(self) -> asyncio.Protocol:
        """HTTP/1.1 unless the codec is HTTP2: with AUTO, the HTTP/1.1 connection hands over to
        HTTP/2 when ALPN says `h2` or the client's first bytes are the preface."""
        app: asyncio.Protocol
        if self.hcm.codec == CODEC_HTTP2:
            app = H2DownstreamConnection(self)
        else:
            app = DownstreamConnection(self)
        if self.tls is None and self.network_rbac is None:
            return app
        return stack(app, self.network_rbac, self.tls, self.tls_stats, f"listener {self.name}")

    def drain(self) -> None:
        self.draining = True
        for connection in list(self.connections):
            connection.drain()

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.abort()
