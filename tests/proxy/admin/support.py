"""A small real `AdminContext` for the admin tests: state in plain attributes, stats in a real
`Store`. It stands in for the proxy runtime, which implements the same Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from remora.proxy.admin.context import (
    CertificateStatus,
    ClusterStatus,
    HostStatus,
    ListenerStatus,
)
from remora.proxy.stats import Store


class StaticContext:
    def __init__(self) -> None:
        self._stats = Store()
        self.live = True
        self.healthcheck_failed = False
        self.shutdown_requests = 0
        self.cluster_list: list[ClusterStatus] = [
            ClusterStatus(
                name="demo",
                hosts=[
                    HostStatus("127.0.0.1", 8080, True, cx_active=2, cx_total=5, rq_active=1,
                               rq_total=40, rq_error=3, weight=1, rq_success=37),
                    HostStatus("::1", 8081, False, health_flags=("failed_active_hc",), weight=5),
                ],
            )
        ]  # fmt: skip
        self.listener_list: list[ListenerStatus] = [
            ListenerStatus("ingress", "127.0.0.1", 10000),
            ListenerStatus("v6", "::1", 10001),
        ]

    @property
    def stats(self) -> Store:
        return self._stats

    def server_info(self) -> dict[str, Any]:
        return {
            "version": "remora/test",
            "state": self._state(),
            "uptime_current_epoch": "3s",
        }

    def _state(self) -> str:
        if not self.live:
            return "INITIALIZING"
        return "DRAINING" if self.healthcheck_failed else "LIVE"

    def config_dump(self) -> dict[str, Any]:
        return {"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"}]}

    def clusters(self) -> Sequence[ClusterStatus]:
        return self.cluster_list

    def listeners(self) -> Sequence[ListenerStatus]:
        return self.listener_list

    def certificates(self) -> Sequence[CertificateStatus]:
        return ()

    def is_ready(self) -> bool:
        return self._state() == "LIVE"

    def set_healthcheck_failed(self, failed: bool) -> None:
        self.healthcheck_failed = failed

    def request_shutdown(self) -> None:
        self.shutdown_requests += 1


def populate(store: Store) -> None:
    """Envoy-named stats the way the data path names them."""
    store.counter("cluster.demo.upstream_rq_total").inc(40)
    store.counter("cluster.demo.upstream_rq_2xx").inc(37)
    store.counter("cluster.demo.upstream_rq_5xx").inc(3)
    store.gauge("cluster.demo.upstream_cx_active").set(2)
    store.counter("http.ingress_http.downstream_rq_total").inc(40)
    store.counter("http.ingress_http.downstream_rq_2xx").inc(40)
    store.counter("listener.127.0.0.1_10000.downstream_cx_total").inc(6)
    store.counter("tcp.egress.downstream_cx_tx_bytes_total").inc(2048)
    store.counter("cluster.demo.upstream_cx_destroy")
    hist = store.histogram("cluster.demo.upstream_rq_time")
    for value in (0.7, 3, 12.5, 40, 900):
        hist.record(value)
