"""Outlier detection without I/O: per-host counters fed by the data path, ejection decisions,
and the periodic sweep that returns hosts and judges success rates.

Envoy's rules. Consecutive 5xx (and gateway failures, 502/503/504) eject a host the moment the
run reaches its threshold; in the default mode a connect failure, reset or timeout counts as a
503 or 504, and with `split_external_local_origin_errors` those count apart, under
`consecutive_local_origin_failure`. Each `interval`, the sweep returns hosts whose ejection is
over, lowers the backoff of hosts that stayed in, and ejects hosts whose success rate lies more
than `success_rate_stdev_factor`/1000 standard deviations below the mean, or whose failure
percentage reaches `failure_percentage_threshold`, among hosts with enough requests in the
interval. An ejection lasts `base_ejection_time` times the number of times in a row the host
was ejected, capped at `max_ejection_time`. Every detection is counted; `enforcing_*` is the
percent chance it is acted on; and `max_ejection_percent` caps ejections (strictly, unless
`always_eject_one_host` lets a first one through).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from remora.proxy.stats import Counter, Gauge, Store
from remora.proxy.stats.group import resolve_group
from remora.proxy.upstream.health_flags import FAILED_OUTLIER_CHECK
from remora.proxy.upstream.outlier_config import OutlierConfig

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Host

log = logging.getLogger("remora.outlier")

_GATEWAY = frozenset({502, 503, 504})


class Reason(Enum):
    CONSECUTIVE_5XX = "consecutive_5xx"
    CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
    CONSECUTIVE_LOCAL_ORIGIN_FAILURE = "consecutive_local_origin_failure"
    SUCCESS_RATE = "success_rate"
    LOCAL_ORIGIN_SUCCESS_RATE = "local_origin_success_rate"
    FAILURE_PERCENTAGE = "failure_percentage"
    FAILURE_PERCENTAGE_LOCAL_ORIGIN = "failure_percentage_local_origin"


@dataclass(slots=True)
class OutlierStats:
    """Envoy's `cluster.<name>.outlier_detection.*`."""

    ejections_active: Gauge
    ejections_overflow: Counter
    ejections_enforced_total: Counter
    ejections_detected_consecutive_5xx: Counter
    ejections_enforced_consecutive_5xx: Counter
    ejections_detected_consecutive_gateway_failure: Counter
    ejections_enforced_consecutive_gateway_failure: Counter
    ejections_detected_consecutive_local_origin_failure: Counter
    ejections_enforced_consecutive_local_origin_failure: Counter
    ejections_detected_success_rate: Counter
    ejections_enforced_success_rate: Counter
    ejections_detected_local_origin_success_rate: Counter
    ejections_enforced_local_origin_success_rate: Counter
    ejections_detected_failure_percentage: Counter
    ejections_enforced_failure_percentage: Counter
    ejections_detected_failure_percentage_local_origin: Counter
    ejections_enforced_failure_percentage_local_origin: Counter

    @classmethod
    def create(cls, store: Store, cluster: str) -> OutlierStats:
        return resolve_group(cls, store, f"cluster.{cluster}.outlier_detection.")

    def count(self, kind: str, reason: Reason) -> Counter:
        counter: Counter = getattr(self, f"ejections_{kind}_{reason.value}")
        return counter


class HostOutlier:
    """One host's run counters and per-interval totals; `on_status` runs per response."""

    __slots__ = (
        "consecutive_5xx",
        "consecutive_gateway",
        "consecutive_local",
        "detector",
        "ejected_at",
        "ejection_time",
        "external_failed",
        "external_total",
        "host",
        "local_failed",
        "local_success_rate",
        "local_total",
        "multiplier",
        "success_rate",
    )

    def __init__(self, detector: OutlierDetector, host: Host) -> None:
        self.detector = detector
        self.host = host
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.consecutive_local = 0
        self.external_total = 0
        self.external_failed = 0
        self.local_total = 0
        self.local_failed = 0
        self.ejected_at: float | None = None
        self.ejection_time = 0.0
        self.multiplier = 0
        self.success_rate = -1.0  # the last sweep's, for /clusters; -1 when not computed
        self.local_success_rate = -1.0

    def on_status(self, status: int) -> None:
        """The upstream answered with `status`."""
        config = self.detector.config
        self.external_total += 1
        if config.split_external_local_origin_errors:
            self.local_total += 1  # the connection worked: a local-origin success
            self.consecutive_local = 0
        if status < 500:
            self.consecutive_5xx = self.consecutive_gateway = 0
            return
        self.external_failed += 1
        self.consecutive_5xx += 1
        if status in _GATEWAY:
            self.consecutive_gateway += 1
        else:
            self.consecutive_gateway = 0
        # A run that reaches its threshold starts over, enforced or not, as in Envoy: the next
        # full run is detected again.
        if self.consecutive_5xx >= config.consecutive_5xx:
            self.consecutive_5xx = 0
            self.detector.detected(self, Reason.CONSECUTIVE_5XX)
        if self.consecutive_gateway >= config.consecutive_gateway_failure:
            self.consecutive_gateway = 0
            self.detector.detected(self, Reason.CONSECUTIVE_GATEWAY_FAILURE)

    def on_local_failure(self, timed_out: bool) -> None:
        """No answer: a connect failure, a reset before the response, or a timeout."""
        config = self.detector.config
        if not config.split_external_local_origin_errors:
            self.on_status(504 if timed_out else 503)  # Envoy's mapping
            return
        self.local_total += 1
        self.local_failed += 1
        self.consecutive_local += 1
        if self.consecutive_local >= config.consecutive_local_origin_failure:
            self.consecutive_local = 0
            self.detector.detected(self, Reason.CONSECUTIVE_LOCAL_ORIGIN_FAILURE)

    @property
    def ejected(self) -> bool:
        return self.ejected_at is not None


_ENFORCING = {
    Reason.CONSECUTIVE_5XX: "enforcing_consecutive_5xx",
    Reason.CONSECUTIVE_GATEWAY_FAILURE: "enforcing_consecutive_gateway_failure",
    Reason.CONSECUTIVE_LOCAL_ORIGIN_FAILURE: "enforcing_consecutive_local_origin_failure",
    Reason.SUCCESS_RATE: "enforcing_success_rate",
    Reason.LOCAL_ORIGIN_SUCCESS_RATE: "enforcing_local_origin_success_rate",
    Reason.FAILURE_PERCENTAGE: "enforcing_failure_percentage",
    Reason.FAILURE_PERCENTAGE_LOCAL_ORIGIN: "enforcing_failure_percentage_local_origin",
}


class OutlierDetector:
    def __init__(
        self,
        config: OutlierConfig,
        stats: OutlierStats,
        cluster_name: str,
        on_change: Callable[[], None],
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> None:
        self.config = config
        self.stats = stats
        self.cluster_name = cluster_name
        self._on_change = on_change
        self._clock = clock
        self._random = random
        self.monitors: dict[Host, HostOutlier] = {}
        self.ejected = 0

    def sync(self, hosts: Sequence[Host]) -> None:
        """The host set changed: monitor new hosts, forget removed ones."""
        current = set(hosts)
        for host in hosts:
            if host not in self.monitors:
                host.outlier = self.monitors[host] = HostOutlier(self, host)
        for host in [h for h in self.monitors if h not in current]:
            host.outlier = None
            if self.monitors.pop(host).ejected:
                self.ejected -= 1
        self.stats.ejections_active.set(self.ejected)

    def detected(self, monitor: HostOutlier, reason: Reason) -> None:
        """A consecutive-error run reached its threshold: eject now, and rebalance."""
        if self._detected(monitor, reason):
            self._on_change()

    def _detected(self, monitor: HostOutlier, reason: Reason) -> bool:
        """Count the detection and eject if enforced and allowed; whether it ejected."""
        if monitor.ejected or self.monitors.get(monitor.host) is not monitor:
            return False  # already out, or a host removed while a response was in flight
        self.stats.count("detected", reason).inc()
        enforcing: int = getattr(self.config, _ENFORCING[reason])
        if enforcing < 100 and self._random() * 100 >= enforcing:
            return False
        return self._eject(monitor, reason)

    def _eject(self, monitor: HostOutlier, reason: Reason) -> bool:
        config = self.config
        over = 100 * (self.ejected + 1) > config.max_ejection_percent * len(self.monitors)
        if over and not (config.always_eject_one_host and self.ejected == 0):
            self.stats.ejections_overflow.inc()
            return False
        base = config.base_ejection_time
        if base * monitor.multiplier < config.max_ejection_time + base:
            monitor.multiplier += 1  # capped: a long-flapping host recovers its backoff soon
        monitor.ejection_time = min(
            base * monitor.multiplier, max(base, config.max_ejection_time)
        ) + (self._random() * config.max_ejection_time_jitter)
        monitor.ejected_at = self._clock()
        self.ejected += 1
        self.stats.ejections_active.set(self.ejected)
        self.stats.ejections_enforced_total.inc()
        self.stats.count("enforced", reason).inc()
        monitor.host.health_flags |= FAILED_OUTLIER_CHECK
        log.warning(
            "outlier detection: cluster %s ejected %s for %.1f s (%s)",
            self.cluster_name, monitor.host, monitor.ejection_time, reason.value,
        )  # fmt: skip
        return True

    def uneject(self, monitor: HostOutlier) -> bool:
        """Back into balancing (its time is up, or an active health check passed)."""
        if not monitor.ejected:
            return False
        monitor.ejected_at = None
        monitor.consecutive_5xx = monitor.consecutive_gateway = monitor.consecutive_local = 0
        self.ejected -= 1
        self.stats.ejections_active.set(self.ejected)
        monitor.host.health_flags &= ~FAILED_OUTLIER_CHECK
        log.info("outlier detection: cluster %s returned %s", self.cluster_name, monitor.host)
        return True

    def sweep(self) -> None:
        now = self._clock()
        changed = False
        for monitor in self.monitors.values():
            if monitor.ejected_at is not None:
                if now >= monitor.ejected_at + monitor.ejection_time:
                    changed |= self.uneject(monitor)
            elif monitor.multiplier:
                monitor.multiplier -= 1
        monitors = list(self.monitors.values())
        for monitor in monitors:  # shown in /clusters until the next sweep; -1: not judged
            monitor.success_rate = monitor.local_success_rate = -1.0
        # Ejected hosts get no traffic: they would only skew the mean and spread.
        changed |= self._judge([m for m in monitors if not m.ejected], local=False)
        if self.config.split_external_local_origin_errors:
            changed |= self._judge([m for m in monitors if not m.ejected], local=True)
        for monitor in monitors:
            monitor.external_total = monitor.external_failed = 0
            monitor.local_total = monitor.local_failed = 0
        if changed:
            self._on_change()

    def _judge(self, monitors: list[HostOutlier], local: bool) -> bool:
        """Success-rate and failure-percentage ejections over the interval's totals."""
        config = self.config
        totals = [
            (m, m.local_total, m.local_failed)
            if local
            else (m, m.external_total, m.external_failed)
            for m in monitors
        ]
        changed = False
        rated = [
            (m, 100.0 * (t - f) / t)
            for m, t, f in totals
            if t >= config.success_rate_request_volume
        ]
        for monitor, rate in rated:
            if local:
                monitor.local_success_rate = rate
            else:
                monitor.success_rate = rate
        if rated and len(rated) >= config.success_rate_minimum_hosts:
            rates = [rate for _m, rate in rated]
            mean = sum(rates) / len(rates)
            stdev = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
            threshold = mean - config.success_rate_stdev_factor / 1000 * stdev
            reason = Reason.LOCAL_ORIGIN_SUCCESS_RATE if local else Reason.SUCCESS_RATE
            for monitor, rate in rated:
                if rate < threshold:
                    changed |= self._detected(monitor, reason)
        busy = [
            (m, 100.0 * f / t)
            for m, t, f in totals
            if t >= config.failure_percentage_request_volume
        ]
        if busy and len(busy) >= config.failure_percentage_minimum_hosts:
            reason = Reason.FAILURE_PERCENTAGE_LOCAL_ORIGIN if local else Reason.FAILURE_PERCENTAGE
            for monitor, failed in busy:
                if failed >= config.failure_percentage_threshold:
                    changed |= self._detected(monitor, reason)
        return changed
