"""The connection manager's Envoy-named stats (`http.<stat_prefix>.*`), resolved once per config."""

from __future__ import annotations

from dataclasses import dataclass, field

from remora.proxy.stats import Counter, Gauge, Histogram, Store
from remora.proxy.stats.group import by_response_class, resolve_group


@dataclass(slots=True)
class HcmStats:
    downstream_cx_total: Counter
    downstream_cx_active: Gauge
    downstream_cx_http1_total: Counter
    downstream_cx_http1_active: Gauge
    downstream_cx_http2_total: Counter
    downstream_cx_http2_active: Gauge
    downstream_cx_ssl_total: Counter
    downstream_cx_ssl_active: Gauge
    downstream_cx_rx_bytes_total: Counter
    downstream_cx_tx_bytes_total: Counter
    downstream_cx_protocol_error: Counter
    downstream_cx_idle_timeout: Counter
    downstream_cx_upgrades_total: Counter
    downstream_cx_upgrades_active: Gauge
    downstream_cx_drain_close: Counter
    downstream_cx_max_duration_reached: Counter
    downstream_rq_total: Counter
    downstream_rq_http1_total: Counter
    downstream_rq_http2_total: Counter
    downstream_rq_active: Gauge
    downstream_rq_1xx: Counter
    downstream_rq_2xx: Counter
    downstream_rq_3xx: Counter
    downstream_rq_4xx: Counter
    downstream_rq_5xx: Counter
    downstream_rq_completed: Counter
    downstream_rq_timeout: Counter
    downstream_rq_idle_timeout: Counter
    downstream_rq_header_timeout: Counter
    downstream_rq_max_duration_reached: Counter
    downstream_rq_rx_reset: Counter
    downstream_rq_tx_reset: Counter
    downstream_rq_too_large: Counter
    downstream_rq_ws_on_non_ws_route: Counter
    downstream_rq_time: Histogram
    no_route: Counter
    no_cluster: Counter
    rq_direct_response: Counter
    rq_redirect: Counter

    by_class: tuple[Counter, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.by_class = by_response_class(self, "downstream_rq")

    @classmethod
    def create(cls, store: Store, stat_prefix: str) -> HcmStats:
        return resolve_group(cls, store, f"http.{stat_prefix}.")

    def response_class(self, status: int) -> Counter:
        return self.by_class[min(max(status // 100, 1), 5) - 1]
