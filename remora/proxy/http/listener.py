"""The HTTP side of a listener: the state its connections share, and the server socket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from remora.proxy.http.config import HcmConfig
from remora.proxy.http.downstream import DownstreamConnection
from remora.proxy.http.hcm_stats import HcmStats
from remora.proxy.listener_stats import ListenerStats
from remora.proxy.stats import Store

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Cluster


class HttpListener:
    """What every connection of one HTTP listener reads: config, clusters, stats, drain state."""

    def __init__(
        self,
        hcm: HcmConfig,
        clusters: Mapping[str, Cluster],
        store: Store,
        listener_stats: ListenerStats,
        buffer_limit: int,
    ) -> None:
        self.hcm = hcm
        self.clusters = clusters
        self.stats = HcmStats.create(store, hcm.stat_prefix)
        self.listener_stats = listener_stats
        self.buffer_limit = buffer_limit
        self.connections: set[DownstreamConnection] = set()
        self.draining = False

    def protocol_factory(self) -> DownstreamConnection:
        return DownstreamConnection(self)

    def drain(self) -> None:
        self.draining = True
        for connection in list(self.connections):
            connection.drain()

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.abort()
