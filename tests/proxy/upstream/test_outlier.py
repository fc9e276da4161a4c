"""Outlier detection's decisions: consecutive runs, sweeps, backoff, caps and enforcement."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.stats import Store
from remora.proxy.upstream.cluster import Cluster, Host
from remora.proxy.upstream.health_flags import FAILED_OUTLIER_CHECK
from remora.proxy.upstream.outlier import HostOutlier, OutlierDetector, OutlierStats
from remora.proxy.upstream.outlier_config import OutlierConfig
from tests.proxy.harness import cluster as cluster_dict


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _setup(
    hosts: int = 4, rolls: list[float] | None = None, **config: Any
) -> tuple[OutlierDetector, list[Host], _Clock, list[int]]:
    compiled = compile_bootstrap(
        parse_dict(
            {"static_resources": {"clusters": [cluster_dict("c", list(range(1, hosts + 1)))]}}
        )
    )
    running = Cluster(compiled.clusters["c"], Store())
    clock, changes = _Clock(), [0]
    values = iter(rolls or [])

    def roll() -> float:
        return next(values, 0.0)

    def changed() -> None:
        changes[0] += 1

    config.setdefault("max_ejection_percent", 100)  # Envoy's 10% would hold every host here
    detector = OutlierDetector(
        dataclasses.replace(OutlierConfig(), **config),
        OutlierStats.create(Store(), "c"), "c", changed, clock, roll,
    )  # fmt: skip
    detector.sync(running.hosts)
    return detector, running.hosts, clock, changes


def _m(host: Host) -> HostOutlier:
    assert host.outlier is not None
    return host.outlier


def test_consecutive_5xx_ejects_at_the_threshold_and_a_success_resets_the_run() -> None:
    detector, hosts, _clock, changes = _setup(consecutive_5xx=3)
    monitor = _m(hosts[0])
    for status in (500, 503, 200, 500, 502):
        monitor.on_status(status)
    assert not monitor.ejected
    monitor.on_status(504)
    assert monitor.ejected and hosts[0].health_flags & FAILED_OUTLIER_CHECK
    assert changes == [1]
    assert detector.stats.ejections_enforced_consecutive_5xx.value == 1
    assert detector.stats.ejections_active.value == 1


def test_gateway_failures_are_detected_but_not_enforced_by_default() -> None:
    detector, hosts, _clock, _changes = _setup(consecutive_5xx=100)
    for _ in range(5):
        _m(hosts[0]).on_status(503)
    assert detector.stats.ejections_detected_consecutive_gateway_failure.value == 1
    assert detector.stats.ejections_enforced_total.value == 0  # enforcing_... defaults to 0
    detector, hosts, _clock, _changes = _setup(
        consecutive_5xx=100, enforcing_consecutive_gateway_failure=100
    )
    for _ in range(5):
        _m(hosts[0]).on_status(503)
    assert _m(hosts[0]).ejected


def test_local_failures_count_as_5xx_unless_split() -> None:
    _detector, hosts, _clock, _changes = _setup(consecutive_5xx=2)
    _m(hosts[0]).on_local_failure(timed_out=False)
    _m(hosts[0]).on_local_failure(timed_out=True)
    assert _m(hosts[0]).ejected
    detector, hosts, _clock, _changes = _setup(
        consecutive_5xx=2,
        consecutive_local_origin_failure=3,
        split_external_local_origin_errors=True,
    )
    monitor = _m(hosts[0])
    monitor.on_local_failure(False)
    monitor.on_local_failure(False)
    monitor.on_status(500)  # the connection worked: the local run restarts
    monitor.on_local_failure(False)
    monitor.on_local_failure(False)
    assert not monitor.ejected
    monitor.on_local_failure(True)
    assert monitor.ejected
    assert detector.stats.ejections_enforced_consecutive_local_origin_failure.value == 1


def test_ejection_time_backs_off_and_the_sweep_returns_hosts() -> None:
    detector, hosts, clock, _changes = _setup(
        consecutive_5xx=1, base_ejection_time=10.0, max_ejection_time=25.0
    )
    monitor = _m(hosts[0])
    times = []
    for _ in range(4):
        monitor.on_status(500)
        times.append(monitor.ejection_time)
        clock.now += monitor.ejection_time - 0.001
        detector.sweep()
        assert monitor.ejected  # not yet
        clock.now += 0.002
        detector.sweep()
        assert not monitor.ejected and not hosts[0].health_flags & FAILED_OUTLIER_CHECK
    assert times == [10.0, 20.0, 25.0, 25.0]  # base x times ejected in a row, capped
    assert monitor.multiplier == 4
    for _ in range(3):  # the multiplier stops growing once base x it passes max + base
        monitor.on_status(500)
        clock.now += 30
        detector.sweep()
    assert monitor.multiplier == 4
    for _ in range(3):
        detector.sweep()  # each sweep it stays in lowers the backoff by one step
    monitor.on_status(500)
    assert monitor.ejection_time == 20.0


def test_max_ejection_percent_is_strict_unless_one_host_may_always_go() -> None:
    detector, hosts, _clock, _changes = _setup(hosts=4, consecutive_5xx=1, max_ejection_percent=10)
    for host in hosts:
        _m(host).on_status(500)
    assert [_m(h).ejected for h in hosts] == [False] * 4  # one of four is 25% > 10%
    assert detector.stats.ejections_overflow.value == 4
    detector, hosts, _clock, _changes = _setup(
        hosts=4, consecutive_5xx=1, max_ejection_percent=10, always_eject_one_host=True
    )
    for host in hosts:
        _m(host).on_status(500)
    assert [_m(h).ejected for h in hosts] == [True, False, False, False]
    assert detector.stats.ejections_overflow.value == 3
    detector, hosts, _clock, _changes = _setup(hosts=4, consecutive_5xx=1, max_ejection_percent=50)
    for host in hosts:
        _m(host).on_status(500)
    assert sum(_m(h).ejected for h in hosts) == 2


def test_enforcing_is_a_percent_chance() -> None:
    detector, hosts, _clock, _changes = _setup(
        consecutive_5xx=1, enforcing_consecutive_5xx=30, rolls=[0.5, 0.1]
    )
    _m(hosts[0]).on_status(500)  # roll 50 >= 30: detected, not enforced
    assert not _m(hosts[0]).ejected
    _m(hosts[0]).on_status(500)  # the run started over: detected again, roll 10 < 30: ejected
    assert _m(hosts[0]).ejected
    assert detector.stats.ejections_detected_consecutive_5xx.value == 2


def _traffic(monitor: HostOutlier, total: int, failed: int) -> None:
    for i in range(total):
        monitor.on_status(500 if i < failed else 200)
        monitor.consecutive_5xx = 0  # judge rates only, not runs


def test_success_rate_ejects_a_host_far_below_the_mean() -> None:
    detector, hosts, _clock, _changes = _setup(
        hosts=3, success_rate_minimum_hosts=3, success_rate_request_volume=20,
        success_rate_stdev_factor=1000, max_ejection_percent=100,
    )  # fmt: skip
    for host, failed in zip(hosts, (0, 1, 10), strict=True):
        _traffic(_m(host), 20, failed)
    detector.sweep()
    # Rates 100, 95, 50: mean 81.7, stdev 22.5, threshold 59.2: only the third is out.
    assert [_m(h).ejected for h in hosts] == [False, False, True]
    assert [_m(h).success_rate for h in hosts] == [100.0, 95.0, 50.0]
    assert detector.stats.ejections_enforced_success_rate.value == 1
    # Too few hosts with enough requests: no verdict, and no rate to show.
    detector.sweep()
    assert [_m(h).success_rate for h in hosts] == [-1.0, -1.0, -1.0]


def test_failure_percentage_ejects_over_the_threshold_when_enforced() -> None:
    detector, hosts, _clock, _changes = _setup(
        hosts=3, failure_percentage_minimum_hosts=3, failure_percentage_request_volume=10,
        enforcing_failure_percentage=100, failure_percentage_threshold=60,
        max_ejection_percent=100, success_rate_request_volume=1000,
    )  # fmt: skip
    for host, failed in zip(hosts, (0, 6, 5), strict=True):
        _traffic(_m(host), 10, failed)
    detector.sweep()
    assert [_m(h).ejected for h in hosts] == [False, True, False]
    assert detector.stats.ejections_enforced_failure_percentage.value == 1


def test_bad_outlier_config_names_the_field() -> None:
    clusters = [cluster_dict("c", [1], outlier_detection={
        "consecutive_5xx": 0, "max_ejection_percent": 101, "interval": "0s",
    })]  # fmt: skip
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict({"static_resources": {"clusters": clusters}}))
    text = "\n".join(str(e) for e in info.value.errors)
    assert "clusters[0].outlier_detection.consecutive_5xx: must be 1 to" in text
    assert "clusters[0].outlier_detection.max_ejection_percent: must be 0 to 100" in text
    assert "clusters[0].outlier_detection.interval: must be a positive duration" in text


def test_a_removed_host_is_forgotten_even_with_a_response_in_flight() -> None:
    detector, hosts, _clock, _changes = _setup(hosts=3, consecutive_5xx=1, max_ejection_percent=50)
    monitor = _m(hosts[0])
    detector.sync(hosts[1:])
    assert hosts[0].outlier is None
    monitor.on_status(500)  # the old monitor, held by a request that was in flight
    assert not monitor.ejected and detector.ejected == 0
    assert detector.stats.ejections_detected_consecutive_5xx.value == 0
