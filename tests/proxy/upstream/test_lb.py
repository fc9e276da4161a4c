"""Envoy's ROUND_ROBIN: rotation, earliest-deadline-first weights, and locality weights."""

from __future__ import annotations

import time
from collections import Counter

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.proxy.stats import Store
from remora.proxy.upstream.cluster import Cluster
from remora.proxy.upstream.lb import LocalityWeighted, WeightedRoundRobin


def test_equal_weights_rotate() -> None:
    lb = WeightedRoundRobin(["a", "b", "c"], [1, 1, 1])
    assert [lb.pick() for _ in range(6)] == ["a", "b", "c"] * 2


def test_weights_give_their_share_with_ties_to_the_earlier_host() -> None:
    lb = WeightedRoundRobin(["a", "b"], [2, 1])
    assert [lb.pick() for _ in range(6)] == ["a", "a", "b"] * 2
    lb = WeightedRoundRobin(["a", "b", "c"], [5, 3, 2])
    counts = Counter(lb.pick() for _ in range(1000))
    assert counts == {"a": 500, "b": 300, "c": 200}


def test_huge_weights_cost_no_more_than_small_ones() -> None:
    started = time.perf_counter()
    lb = WeightedRoundRobin(["a", "b"], [10_000_000, 1])
    picks = [lb.pick() for _ in range(20_000)]
    assert time.perf_counter() - started < 0.5
    assert picks.count("b") <= 1


def test_empty_and_zero_weight() -> None:
    assert WeightedRoundRobin([], []).pick() is None
    assert WeightedRoundRobin(["a"], [0]).pick() is None


def test_localities_by_weight_then_hosts_by_theirs() -> None:
    lb = LocalityWeighted([(3, ["a1", "a2"], [1, 1]), (1, ["b1"], [1]), (0, ["z"], [1])])
    counts = Counter(lb.pick() for _ in range(800))
    assert counts == {"a1": 300, "a2": 300, "b1": 200}


def _cluster(locality_weighted: bool) -> Cluster:
    def locality(weight: int | None, port: int) -> dict[str, object]:
        entry: dict[str, object] = {"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}  # fmt: skip
        if weight is not None:
            entry["load_balancing_weight"] = weight
        return entry

    cluster: dict[str, object] = {
        "name": "c", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "c",
                            "endpoints": [locality(3, 1), locality(1, 2), locality(None, 3)]},
    }  # fmt: skip
    if locality_weighted:
        cluster["common_lb_config"] = {"locality_weighted_lb_config": {}}
    config = compile_bootstrap(parse_dict({"static_resources": {"clusters": [cluster]}}))
    return Cluster(config.clusters["c"], Store())


def test_a_cluster_honours_locality_weights_only_when_asked() -> None:
    weighted, plain = _cluster(True), _cluster(False)
    picks = Counter(host.port for host in (weighted.pick() for _ in range(400)) if host)
    assert picks == {1: 300, 2: 100}  # the locality with no weight gets nothing
    picks = Counter(host.port for host in (plain.pick() for _ in range(300)) if host)
    assert picks == {1: 100, 2: 100, 3: 100}
