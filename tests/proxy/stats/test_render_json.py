from __future__ import annotations

import json

from remora.proxy.stats.query import StatsQuery
from remora.proxy.stats.render_json import render_json
from remora.proxy.stats.store import Store


def test_envoy_json_shape() -> None:
    store = Store()
    store.counter("cluster.demo.upstream_rq_total").inc(3)
    store.gauge("cluster.demo.upstream_cx_active").set(1)
    hist = store.histogram("cluster.demo.upstream_rq_time")
    hist.record(5)
    store.flush()
    hist.record(7)
    doc = json.loads(render_json(store, StatsQuery()))
    stats = doc["stats"]
    assert stats[:2] == [
        {"name": "cluster.demo.upstream_cx_active", "value": 1},
        {"name": "cluster.demo.upstream_rq_total", "value": 3},
    ]
    histograms = stats[2]["histograms"]
    assert histograms["supported_quantiles"] == [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    (entry,) = histograms["computed_quantiles"]
    assert entry["name"] == "cluster.demo.upstream_rq_time"
    assert len(entry["values"]) == 10
    assert entry["values"][0] == {"interval": 5, "cumulative": 5}
    assert entry["values"][-1] == {"interval": 5, "cumulative": 7}


def test_empty_interval_is_null_and_histograms_omitted_when_none_selected() -> None:
    store = Store()
    store.histogram("h").record(1)
    doc = json.loads(render_json(store, StatsQuery()))
    values = doc["stats"][0]["histograms"]["computed_quantiles"][0]["values"]
    assert all(v["interval"] is None for v in values)
    assert all(v["cumulative"] == 1 for v in values)
    only_counters = json.loads(render_json(store, StatsQuery.from_params([("type", "Counters")])))
    assert only_counters == {"stats": []}
