"""Health-check decisions: thresholds, the first check, and which interval comes next."""

from __future__ import annotations

from remora.proxy.upstream.health_check import (
    CheckState,
    Outcome,
    Transition,
    contains_in_order,
    next_interval,
    status_outcome,
)
from remora.proxy.upstream.health_check_config import HealthCheckConfig, HttpCheck, TcpCheck

PASS, FAIL, NOW = Outcome.PASS, Outcome.FAIL, Outcome.FAIL_NOW


def _config(**extra: object) -> HealthCheckConfig:
    fields: dict[str, object] = {
        "probe": TcpCheck(), "timeout": 1.0, "interval": 10.0,
        "unhealthy_threshold": 3, "healthy_threshold": 2,
    }  # fmt: skip
    fields.update(extra)
    return HealthCheckConfig(**fields)  # type: ignore[arg-type]


def _run(outcomes: list[Outcome]) -> list[Transition]:
    state, config = CheckState(), _config()
    return [state.record(o, config) for o in outcomes]


def test_the_first_pass_admits_a_new_host_at_once() -> None:
    assert _run([PASS]) == [Transition.TO_HEALTHY]
    # A first failure keeps it out; then it takes healthy_threshold passes in a row.
    assert _run([FAIL, PASS, FAIL, PASS, PASS]) == [Transition.NONE] * 4 + [Transition.TO_HEALTHY]


def test_failures_in_a_row_fail_a_host_and_a_pass_resets_the_count() -> None:
    none = Transition.NONE
    assert _run([PASS, FAIL, FAIL, PASS, FAIL, FAIL, FAIL]) == [
        Transition.TO_HEALTHY, none, none, none, none, none, Transition.TO_UNHEALTHY,
    ]  # fmt: skip
    assert _run([PASS, NOW]) == [Transition.TO_HEALTHY, Transition.TO_UNHEALTHY]


def test_the_interval_follows_traffic_health_and_transitions() -> None:
    config = _config(
        no_traffic_interval=60.0, unhealthy_interval=5.0, healthy_edge_interval=1.0,
        unhealthy_edge_interval=2.0,
    )  # fmt: skip
    none = Transition.NONE

    def interval(healthy: bool, transition: Transition, traffic: bool = True) -> float:
        return next_interval(config, healthy, transition, traffic, lambda: 0.5)

    assert interval(True, none, traffic=False) == 60.0
    assert interval(True, Transition.TO_HEALTHY) == 1.0
    assert interval(False, Transition.TO_UNHEALTHY) == 2.0
    assert interval(False, none) == 5.0
    assert interval(True, none) == 10.0
    jittered = _config(interval_jitter=2.0, interval_jitter_percent=10)
    # Half of the absolute jitter plus half of 10% of the base.
    assert next_interval(jittered, True, none, True, lambda: 0.5) == 10.0 + 1.0 + 0.5


def test_statuses_and_payload_matching() -> None:
    check = HttpCheck(b"", ((200, 300),), ((429, 430), (503, 504)))
    assert [status_outcome(s, check) for s in (204, 429, 503, 500, 404)] == [
        PASS, FAIL, FAIL, NOW, NOW
    ]  # fmt: skip
    assert contains_in_order(b"xxABzzCD", (b"AB", b"CD"))
    assert not contains_in_order(b"CDxxAB", (b"AB", b"CD"))
    assert contains_in_order(b"anything", ())
