"""Active health checking's decisions, without I/O: what one check result does to a host, and
when the next check is due.

Envoy's rules: a new host is unhealthy until checked, and its first passing check makes it
healthy at once; after that it takes `healthy_threshold` passes in a row to come back and
`unhealthy_threshold` failures in a row to go. A failure that says the service answered but is
not serving (an HTTP status outside both `expected_statuses` and `retriable_statuses`) fails
the host at once. A cluster that has never had traffic is checked only every
`no_traffic_interval` (60 s by default), which spares idle clusters; the edge intervals apply
to the check right after a transition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from remora.proxy.upstream.health_check_config import HealthCheckConfig, HttpCheck


class Outcome(Enum):
    PASS = "pass"
    FAIL = "fail"  # counts toward unhealthy_threshold: no connection, reset, timeout, retriable
    FAIL_NOW = "fail_now"  # fails the host at once


class Transition(Enum):
    NONE = "none"
    TO_HEALTHY = "healthy"
    TO_UNHEALTHY = "unhealthy"


@dataclass(slots=True)
class CheckState:
    healthy: bool = False
    checked: bool = False  # has had a first result
    passes: int = 0
    failures: int = 0

    def record(self, outcome: Outcome, config: HealthCheckConfig) -> Transition:
        first = not self.checked
        self.checked = True
        if outcome is Outcome.PASS:
            self.failures = 0
            if self.healthy:
                return Transition.NONE
            self.passes += 1
            if first or self.passes >= config.healthy_threshold:
                self.healthy, self.passes = True, 0
                return Transition.TO_HEALTHY
            return Transition.NONE
        self.passes = 0
        if not self.healthy:
            return Transition.NONE
        self.failures += 1
        if outcome is Outcome.FAIL_NOW or self.failures >= config.unhealthy_threshold:
            self.healthy, self.failures = False, 0
            return Transition.TO_UNHEALTHY
        return Transition.NONE


def next_interval(
    config: HealthCheckConfig,
    healthy: bool,
    transition: Transition,
    had_traffic: bool,
    random: Callable[[], float],
) -> float:
    if not had_traffic:
        base = (
            config.no_traffic_healthy_interval
            if healthy and config.no_traffic_healthy_interval is not None
            else config.no_traffic_interval
        )
    elif transition is Transition.TO_HEALTHY:
        base = config.healthy_edge_interval or config.interval
    elif transition is Transition.TO_UNHEALTHY:
        base = config.unhealthy_edge_interval or config.unhealthy_interval or config.interval
    elif not healthy:
        base = config.unhealthy_interval or config.interval
    else:
        base = config.interval
    jitter = random() * config.interval_jitter
    if config.interval_jitter_percent:
        jitter += random() * base * config.interval_jitter_percent / 100
    return base + jitter


def status_outcome(status: int, check: HttpCheck) -> Outcome:
    if any(start <= status < end for start, end in check.expected_statuses):
        return Outcome.PASS
    if any(start <= status < end for start, end in check.retriable_statuses):
        return Outcome.FAIL
    return Outcome.FAIL_NOW


def contains_in_order(data: bytes, blocks: tuple[bytes, ...]) -> bool:
    """Envoy's TCP receive match: every block appears, in order, not necessarily adjacent."""
    at = 0
    for block in blocks:
        found = data.find(block, at)
        if found < 0:
            return False
        at = found + len(block)
    return True
