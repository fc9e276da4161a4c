from __future__ import annotations

import re

from remora.proxy.stats.query import StatsQuery
from remora.proxy.stats.render_text import render_text
from remora.proxy.stats.store import Store


def test_scalars_sorted_then_histograms() -> None:
    store = Store()
    store.counter("cluster.demo.upstream_rq_total").inc(7)
    store.gauge("cluster.demo.upstream_cx_active").set(2)
    store.counter("server.live")
    store.histogram("cluster.demo.upstream_cx_connect_ms")
    hist = store.histogram("cluster.demo.upstream_rq_time")
    hist.record(12.5)
    text = render_text(store, StatsQuery())
    lines = text.splitlines()
    assert lines[:3] == [
        "cluster.demo.upstream_cx_active: 2",
        "cluster.demo.upstream_rq_total: 7",
        "server.live: 0",
    ]
    assert lines[3] == "cluster.demo.upstream_cx_connect_ms: No recorded values"
    # Before any flush the interval is empty: Envoy prints nan for it.
    assert lines[4] == (
        "cluster.demo.upstream_rq_time: P0(nan,12.5) P25(nan,12.5) P50(nan,12.5) "
        "P75(nan,12.5) P90(nan,12.5) P95(nan,12.5) P99(nan,12.5) P99.5(nan,12.5) "
        "P99.9(nan,12.5) P100(nan,12.5)"
    )
    assert text.endswith("\n")


def test_histogram_line_after_flush_has_interval_values() -> None:
    store = Store()
    hist = store.histogram("h.t")
    for value in (1, 2, 3, 40):
        hist.record(value)
    store.flush()
    line = render_text(store, StatsQuery()).strip()
    entries = re.findall(r"P([\d.]+)\(([^,]+),([^)]+)\)", line)
    assert [e[0] for e in entries] == [
        "0",
        "25",
        "50",
        "75",
        "90",
        "95",
        "99",
        "99.5",
        "99.9",
        "100",
    ]
    assert entries[0][1:] == ("1", "1")
    assert entries[-1][1:] == ("40", "40")


def test_filter_and_usedonly() -> None:
    store = Store()
    store.counter("cluster.a.upstream_rq_total").inc()
    store.counter("cluster.b.upstream_rq_total")
    store.histogram("cluster.a.upstream_rq_time")
    query = StatsQuery.from_params([("filter", "upstream_rq"), ("usedonly", "")])
    assert render_text(store, query) == "cluster.a.upstream_rq_total: 1\n"
