"""What one `--concurrency` worker tells the supervisor's admin, and how N of them add up.

A snapshot is plain JSON: the worker's stats with histogram buckets (so they can be added, not
just their quantiles), its /clusters view, and the read-only parts of its admin. Counters,
histograms and activity gauges are summed, as one process's stats would count the same
traffic; state gauges (`server.*`, membership, healthy hosts) show the largest value. Per
host, the request counters are summed and the health flags united: each worker checks and
ejects on its own, and a host any worker has failed is shown failed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from remora.proxy.admin.context import (
    AdminContext,
    CircuitBreakerThresholds,
    ClusterStatus,
    HostStatus,
    ListenerStatus,
)
from remora.proxy.stats import Store
from remora.proxy.stats.histogram import HistogramSnapshot
from remora.proxy.upstream.health_flags import NAMES

# The per-host fields that count (summed); the rest describe the host (taken from one worker).
_HOST_COUNTERS = (
    "cx_active", "cx_total", "rq_active", "rq_total", "rq_error", "cx_connect_fail",
    "rq_success", "rq_timeout",
)  # fmt: skip


def take(context: AdminContext) -> dict[str, Any]:
    return {
        **stats_snapshot(context.stats),
        "clusters": clusters_snapshot(context.clusters()),
        "listeners": [dataclasses.asdict(entry) for entry in context.listeners()],
        "ready": context.is_ready(),
        "server_info": context.server_info(),
        "config_dump": context.config_dump(),
    }


def stats_snapshot(store: Store) -> dict[str, Any]:
    return {
        "counters": {c.name: c.value for c in store.counters()},
        "gauges": {g.name: g.value for g in store.gauges()},
        "histograms": {
            h.name: [list(h.bounds), list(h.counts), h.sum, _finite(h.min), _finite(h.max)]
            for h in store.histograms()
        },
    }


def clusters_snapshot(clusters: Sequence[ClusterStatus]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(c) for c in clusters]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# Gauges that describe state rather than count activity: the workers' values are not added
# (N workers are not N times live, N times as old, or N times as many hosts); the largest is
# shown. Everything else (active connections and requests, ...) is summed.
_STATE_GAUGES = re.compile(
    r"^server\.|\.membership_\w+$|\.health_check\.healthy$|\.outlier_detection\.ejections_active$"
)


def merged_store(snapshots: Sequence[dict[str, Any]]) -> Store:
    store = Store()
    for snapshot in snapshots:
        for name, value in snapshot["counters"].items():
            store.counter(name).inc(value)
        for name, value in snapshot["gauges"].items():
            gauge = store.gauge(name)
            gauge.set(
                max(gauge.value, value) if _STATE_GAUGES.search(name) else gauge.value + value
            )
        for name, (bounds, counts, total, low, high) in snapshot["histograms"].items():
            count = sum(counts)
            store.histogram(name, bounds).merge(
                HistogramSnapshot(
                    tuple(bounds), tuple(counts), count, total,
                    math.nan if low is None else low, math.nan if high is None else high,
                )
            )  # fmt: skip
    return store


def merged_clusters(snapshots: Sequence[dict[str, Any]]) -> list[ClusterStatus]:
    clusters: dict[str, dict[str, Any]] = {}
    hosts: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for snapshot in snapshots:
        for cluster in snapshot["clusters"]:
            clusters.setdefault(cluster["name"], cluster)
            by_address = hosts.setdefault(cluster["name"], {})
            for host in cluster["hosts"]:
                key = (host["address"], host["port"])
                seen = by_address.get(key)
                if seen is None:
                    by_address[key] = dict(host)
                    continue
                for field in _HOST_COUNTERS:
                    seen[field] += host[field]
                seen["healthy"] = seen["healthy"] and host["healthy"]
                united = set(seen["health_flags"]) | set(host["health_flags"])
                seen["health_flags"] = [name for name in NAMES if name in united]
    result: list[ClusterStatus] = []
    for name, cluster in clusters.items():
        result.append(
            ClusterStatus(
                name=name,
                hosts=tuple(
                    HostStatus(**{**h, "health_flags": tuple(h["health_flags"])})
                    for h in hosts[name].values()
                ),
                added_via_api=cluster["added_via_api"],
                circuit_breakers=tuple(
                    CircuitBreakerThresholds(**cb) for cb in cluster["circuit_breakers"]
                ),
            )
        )
    return result


def listeners(snapshot: dict[str, Any]) -> list[ListenerStatus]:
    return [ListenerStatus(**entry) for entry in snapshot["listeners"]]
