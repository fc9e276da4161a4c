from __future__ import annotations

import pytest

from remora.proxy.stats.errors import InvalidStatsQuery
from remora.proxy.stats.query import StatsQuery, select
from remora.proxy.stats.store import Store


def _store() -> Store:
    store = Store()
    store.counter("cluster.b.upstream_rq_total").inc()
    store.counter("cluster.a.upstream_rq_total")
    store.gauge("cluster.a.upstream_cx_active").set(1)
    store.histogram("cluster.a.upstream_rq_time").record(3)
    store.histogram("http.admin.downstream_rq_time")
    return store


def test_default_selects_everything_sorted_by_name() -> None:
    selection = select(_store(), StatsQuery())
    assert [s.name for s in selection.scalars] == [
        "cluster.a.upstream_cx_active",
        "cluster.a.upstream_rq_total",
        "cluster.b.upstream_rq_total",
    ]
    assert [h.name for h in selection.histograms] == [
        "cluster.a.upstream_rq_time",
        "http.admin.downstream_rq_time",
    ]


def test_filter_is_a_partial_regex_match() -> None:
    query = StatsQuery.from_params([("filter", r"^cluster\.a\.")])
    selection = select(_store(), query)
    assert [s.name for s in selection.scalars] == [
        "cluster.a.upstream_cx_active",
        "cluster.a.upstream_rq_total",
    ]
    assert [
        h.name for h in select(_store(), StatsQuery.from_params([("filter", "rq_t")])).histograms
    ]


def test_usedonly_flag_present_without_value() -> None:
    selection = select(_store(), StatsQuery.from_params([("usedonly", "")]))
    assert [s.name for s in selection.scalars] == [
        "cluster.a.upstream_cx_active",
        "cluster.b.upstream_rq_total",
    ]
    assert [h.name for h in selection.histograms] == ["cluster.a.upstream_rq_time"]


def test_type_parameter() -> None:
    selection = select(_store(), StatsQuery.from_params([("type", "Gauges")]))
    assert [s.name for s in selection.scalars] == ["cluster.a.upstream_cx_active"]
    assert selection.histograms == ()


@pytest.mark.parametrize(("key", "value"), [("filter", "(unclosed"), ("type", "Bogus")])
def test_bad_parameters_raise_typed_error(key: str, value: str) -> None:
    with pytest.raises(InvalidStatsQuery) as info:
        StatsQuery.from_params([(key, value)])
    assert info.value.parameter == key
    assert info.value.value == value
