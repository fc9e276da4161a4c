"""Envoy's HTTP/2 codec stats: `http2.*` for clients, one group per process as Envoy roots them
there, and `cluster.<name>.http2.*` for a cluster's upstream connections."""

from __future__ import annotations

from dataclasses import dataclass

from remora.proxy.stats import Counter, Gauge, Store
from remora.proxy.stats.group import resolve_group


@dataclass(slots=True)
class Http2Stats:
    rx_reset: Counter
    tx_reset: Counter
    rx_messaging_error: Counter
    header_overflow: Counter
    goaway_sent: Counter
    keepalive_timeout: Counter
    outbound_flood: Counter
    outbound_control_flood: Counter
    inbound_empty_frames_flood: Counter
    inbound_priority_frames_flood: Counter
    inbound_window_update_frames_flood: Counter
    # Streams a client reset before their response began: the rapid-reset (CVE-2023-44487)
    # signal, as Envoy's premature-reset accounting.
    premature_reset: Counter
    streams_active: Gauge

    @classmethod
    def create(cls, store: Store, prefix: str = "") -> Http2Stats:
        return resolve_group(cls, store, f"{prefix}http2.")
