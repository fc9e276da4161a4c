"""Summing worker snapshots: counters, gauges and histogram buckets add; host health unites."""

from __future__ import annotations

from typing import Any

from remora.proxy.admin.context import ClusterStatus, HostStatus
from remora.proxy.stats import Store
from remora.proxy.worker_snapshot import (
    clusters_snapshot,
    merged_clusters,
    merged_store,
    stats_snapshot,
)


def _snapshot(store: Store, hosts: list[HostStatus]) -> dict[str, Any]:
    return {**stats_snapshot(store), "clusters": clusters_snapshot([ClusterStatus("c", hosts)])}


def test_stats_and_hosts_add_up() -> None:
    one, two = Store(), Store()
    one.counter("a").inc(3)
    two.counter("a").inc(4)
    one.gauge("g").set(2)
    two.gauge("g").set(5)
    one.gauge("server.live").set(1)
    two.gauge("server.live").set(1)
    one.gauge("cluster.c.membership_healthy").set(3)
    two.gauge("cluster.c.membership_healthy").set(2)
    one.histogram("h", [1, 10]).record(0.5)
    two.histogram("h", [1, 10]).record(20)
    hosts_one = [HostStatus("127.0.0.1", 1, True, rq_total=5)]
    hosts_two = [HostStatus("127.0.0.1", 1, False, rq_total=7,
                            health_flags=("failed_outlier_check",))]  # fmt: skip
    store = merged_store([_snapshot(one, hosts_one), _snapshot(two, hosts_two)])
    assert store.counter("a").value == 7
    assert store.gauge("g").value == 7
    assert store.gauge("server.live").value == 1
    assert store.gauge("cluster.c.membership_healthy").value == 3
    histogram = store.histogram("h", [1, 10])
    assert (histogram.counts, histogram.count, histogram.min, histogram.max) == (
        [1, 0, 1],
        2,
        0.5,
        20,
    )
    [cluster] = merged_clusters([_snapshot(one, hosts_one), _snapshot(two, hosts_two)])
    [host] = cluster.hosts
    assert (host.rq_total, host.healthy, host.health_flags) == (
        12,
        False,
        ("failed_outlier_check",),
    )
