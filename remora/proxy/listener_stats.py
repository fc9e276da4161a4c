"""Per-listener stats (`listener.<address>.*`), shared by HTTP and TCP listeners."""

from __future__ import annotations

from remora.proxy.stats import Store


class ListenerStats:
    __slots__ = ("downstream_cx_active", "downstream_cx_total", "no_filter_chain_match")

    def __init__(self, store: Store, stat_prefix: str) -> None:
        self.downstream_cx_total = store.counter(f"listener.{stat_prefix}.downstream_cx_total")
        self.downstream_cx_active = store.gauge(f"listener.{stat_prefix}.downstream_cx_active")
        self.no_filter_chain_match = store.counter(f"listener.{stat_prefix}.no_filter_chain_match")

    def on_open(self) -> None:
        self.downstream_cx_total.inc()
        self.downstream_cx_active.inc()

    def on_close(self) -> None:
        self.downstream_cx_active.dec()
