"""Priority levels, the overprovisioning factor and the panic threshold, as Envoy computes them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.stats import Store
from remora.proxy.upstream.cluster import Cluster
from remora.proxy.upstream.health_flags import FAILED_ACTIVE_HC, FAILED_OUTLIER_CHECK
from remora.proxy.upstream.priority import plan_levels


def _loads(levels: list[tuple[int, int]], op: int = 140, panic: float = 50.0) -> list[int]:
    return [plan.load for plan in plan_levels(levels, op, panic)]


@pytest.mark.parametrize(
    ("healthy_p0", "expected"),
    # Envoy's table for two levels with P1 fully healthy (percent of P0 hosts healthy).
    [(100, [100, 0]), (72, [100, 0]), (71, [99, 1]), (50, [70, 30]), (25, [35, 65]), (0, [0, 100])],
)
def test_traffic_trickles_to_the_next_level_as_the_first_loses_hosts(
    healthy_p0: int, expected: list[int]
) -> None:
    assert _loads([(healthy_p0, 100), (100, 100)]) == expected


def test_shares_are_scaled_up_when_the_levels_together_are_short() -> None:
    # 20% + 20% healthy: healths 28 + 28 = 56 < 100, so each level gets half, and both panic.
    plans = plan_levels([(20, 100), (20, 100)], 140, 50.0)
    assert [p.load for p in plans] == [50, 50]
    assert [p.panic for p in plans] == [True, True]
    # One level in panic, the other not: the health-based shares stand.
    plans = plan_levels([(10, 100), (55, 100)], 140, 50.0)  # healths 14 + 77 = 91
    assert [(p.load, p.panic) for p in plans] == [(16, True), (84, False)]
    # Enough capacity across the levels: no panic even though P0 alone is far below 50%.
    plans = plan_levels([(10, 100), (100, 100)], 140, 50.0)
    assert [(p.load, p.panic) for p in plans] == [(14, False), (86, False)]


def test_when_every_level_panics_traffic_follows_the_host_counts() -> None:
    # Nothing available anywhere, as Envoy's total panic: 3 hosts and 2 hosts share 60/40.
    plans = plan_levels([(0, 3), (0, 2)], 140, 50.0)
    assert [(p.load, p.panic) for p in plans] == [(60, True), (40, True)]
    # Short everywhere but not empty: still every level in panic.
    assert [p.load for p in plan_levels([(1, 10), (1, 5)], 140, 50.0)] == [67, 33]
    # A threshold of 0 disables panic: the first level takes all and finds no host.
    assert [(p.load, p.panic) for p in plan_levels([(0, 3), (0, 2)], 140, 0.0)] == [
        (100, False),
        (0, False),
    ]


def test_the_overprovisioning_factor_is_the_control_planes_to_set() -> None:
    assert _loads([(80, 100), (100, 100)], op=100) == [80, 20]
    assert _loads([(50, 100), (100, 100)], op=200) == [100, 0]


def test_rounding_leftover_goes_to_the_first_level_with_health() -> None:
    for p0 in range(101):
        for p1 in range(0, 101, 7):
            loads = _loads([(p0, 100), (p1, 100), (3, 10)])
            assert sum(loads) == 100, (p0, p1, loads)


def _cluster(**extra: Any) -> Cluster:
    def level(priority: int, ports: list[int]) -> dict[str, Any]:
        return {"priority": priority, "lb_endpoints": [_endpoint(p) for p in ports]}

    cluster: dict[str, Any] = {
        "name": "c", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "c",
                            "endpoints": [level(0, [1, 2, 3, 4]), level(1, [11, 12])]},
        **extra,
    }  # fmt: skip
    config = compile_bootstrap(parse_dict({"static_resources": {"clusters": [cluster]}}))
    return Cluster(config.clusters["c"], Store())


def _endpoint(port: int, **extra: str) -> dict[str, Any]:
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return {"endpoint": {"address": address}, **extra}


def _fail(cluster: Cluster, ports: set[int], flag: int = FAILED_ACTIVE_HC) -> None:
    for host in cluster.hosts:
        if host.port in ports:
            host.health_flags |= flag
    cluster.health_changed()


def _picks(cluster: Cluster, n: int = 1000) -> Counter[int]:
    return Counter(host.port for host in (cluster.pick() for _ in range(n)) if host)


def test_a_cluster_fails_over_to_the_next_priority() -> None:
    cluster = _cluster()
    assert set(_picks(cluster)) == {1, 2, 3, 4}  # all healthy: P1 gets nothing
    _fail(cluster, {1})  # 75% up: health 105 -> still all of the traffic, on the live hosts
    assert set(_picks(cluster)) == {2, 3, 4}
    _fail(cluster, {2}, FAILED_OUTLIER_CHECK)  # 50% up: 70% stays, 30% to P1
    picks = _picks(cluster)
    assert picks[3] + picks[4] == 700 and picks[11] + picks[12] == 300
    assert cluster.stats.membership_healthy.value == 4
    _fail(cluster, {3, 4})  # P0 all down: everything on P1
    assert set(_picks(cluster)) == {11, 12}
    assert cluster.stats.lb_healthy_panic.value == 0


def test_a_level_short_of_hosts_everywhere_panics_over_all_its_hosts() -> None:
    cluster = _cluster()
    _fail(cluster, {1, 2, 3, 11})  # P0 25% (health 35), P1 50% (health 70): 105 -> no panic
    assert set(_picks(cluster)) == {4, 12}
    _fail(cluster, {4, 12})  # nothing available anywhere: every level panics, 4:2 by hosts
    picks = _picks(cluster, 600)
    assert set(picks) == {1, 2, 3, 4, 11, 12}
    assert sum(picks[p] for p in (1, 2, 3, 4)) == 402  # 67% of the picks (67:33 rounded)
    assert cluster.stats.lb_healthy_panic.value == 600


def test_panic_threshold_zero_means_no_host_rather_than_a_failed_one() -> None:
    cluster = _cluster(common_lb_config={"healthy_panic_threshold": {"value": 0}})
    _fail(cluster, {1, 2, 3, 4, 11, 12})
    assert cluster.pick() is None


def test_eds_health_status_takes_hosts_out() -> None:
    statuses = ["HEALTHY", "UNHEALTHY", "DRAINING", "UNKNOWN", "TIMEOUT"]
    endpoints = [_endpoint(i, health_status=s) for i, s in enumerate(statuses, 1)]
    cluster: dict[str, Any] = {
        "name": "c", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "c", "endpoints": [{"lb_endpoints": endpoints}]},
    }  # fmt: skip
    config = compile_bootstrap(parse_dict({"static_resources": {"clusters": [cluster]}}))
    running = Cluster(config.clusters["c"], Store())
    # 2 of 5 up: health 56, below 100 and 40% < 50%: panic over all five.
    assert set(_picks(running)) == {1, 2, 3, 4, 5}
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][1]["health_status"] = "HEALTHY"
    config = compile_bootstrap(parse_dict({"static_resources": {"clusters": [cluster]}}))
    running.set_endpoints(config.clusters["c"])  # 3 of 5: health 84, 60% >= 50%: no panic
    assert set(_picks(running)) == {1, 2, 4}


def test_bad_priority_settings_name_their_field() -> None:
    cluster: dict[str, Any] = {
        "name": "c", "type": "STATIC", "connect_timeout": "1s",
        "common_lb_config": {"healthy_panic_threshold": {"value": 101}},
        "load_assignment": {"cluster_name": "c", "policy": {"overprovisioning_factor": 0},
                            "endpoints": [{"lb_endpoints": [{"health_status": "DEGRADED",
                                "endpoint": {"address": {"socket_address": {
                                    "address": "127.0.0.1", "port_value": 1}}}}]}]},
    }  # fmt: skip
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict({"static_resources": {"clusters": [cluster]}}))
    text = "\n".join(str(e) for e in info.value.errors)
    assert "clusters[0].common_lb_config.healthy_panic_threshold.value" in text
    assert "clusters[0].load_assignment.policy.overprovisioning_factor" in text
    assert "clusters[0].load_assignment.endpoints[0].lb_endpoints[0].health_status" in text
