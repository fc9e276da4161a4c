from __future__ import annotations

import pytest

from remora.proxy.stats.errors import InvalidHistogramBounds, InvalidStatName, StatKindConflict
from remora.proxy.stats.store import Store


def test_lookup_is_idempotent_so_reloads_keep_counting() -> None:
    store = Store()
    first = store.counter("cluster.demo.upstream_rq_total")
    first.inc(2)
    again = store.counter("cluster.demo.upstream_rq_total")
    assert again is first
    again.inc()
    assert first.value == 3
    assert store.gauge("g.x") is store.gauge("g.x")
    assert store.histogram("h.x") is store.histogram("h.x")


def test_iteration_lists_each_kind() -> None:
    store = Store()
    store.counter("a.c")
    store.gauge("a.g")
    store.histogram("a.h")
    assert [c.name for c in store.counters()] == ["a.c"]
    assert [g.name for g in store.gauges()] == ["a.g"]
    assert [h.name for h in store.histograms()] == ["a.h"]
    assert len(store) == 3


def test_iteration_tolerates_new_stats_while_rendering() -> None:
    store = Store()
    store.counter("a")
    for counter in store.counters():
        store.counter(counter.name + ".b")  # would raise "dict changed size" on a live view
    assert len(store) == 2


def test_kind_conflict_names_the_stat() -> None:
    store = Store()
    store.counter("cluster.demo.x")
    with pytest.raises(StatKindConflict) as info:
        store.gauge("cluster.demo.x")
    assert info.value.name == "cluster.demo.x"
    assert (info.value.existing, info.value.requested) == ("counter", "gauge")
    with pytest.raises(StatKindConflict):
        store.histogram("cluster.demo.x")


@pytest.mark.parametrize("name", ["", "a b", "a\nb", ".a", "a.", "a..b", "a\tb"])
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidStatName) as info:
        Store().counter(name)
    assert info.value.name == name


def test_histogram_bounds_must_match_on_relookup() -> None:
    store = Store()
    store.histogram("h", (1, 2, 3))
    assert store.histogram("h", (1, 2, 3)).bounds == (1, 2, 3)
    with pytest.raises(InvalidHistogramBounds, match="already exists"):
        store.histogram("h")


def test_scope_prefixes_names() -> None:
    store = Store()
    cluster = store.scope("cluster.demo")
    cluster.counter("upstream_rq_total").inc()
    cluster.scope("outlier_detection.").counter("ejections_total").inc()
    names = sorted(c.name for c in store.counters())
    assert names == [
        "cluster.demo.outlier_detection.ejections_total",
        "cluster.demo.upstream_rq_total",
    ]


def test_flush_closes_histogram_intervals() -> None:
    store = Store()
    hist = store.histogram("h")
    hist.record(1)
    store.flush()
    assert hist.interval().count == 1
