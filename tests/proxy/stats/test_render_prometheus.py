from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from remora.proxy.stats.query import StatsQuery
from remora.proxy.stats.render_prometheus import render_prometheus, sanitize
from remora.proxy.stats.store import Store


def _populated() -> Store:
    store = Store()
    store.counter("cluster.demo.upstream_rq_2xx").inc(5)
    store.counter("cluster.demo.upstream_rq_5xx").inc(2)
    store.counter("cluster.other.upstream_rq_2xx").inc(1)
    store.counter("cluster.demo.upstream_rq_total").inc(7)
    store.counter("cluster.demo.upstream_cx_destroy")
    store.gauge("cluster.demo.upstream_cx_active").set(3)
    store.counter("http.ingress_http.downstream_rq_total").inc(9)
    store.counter("listener.127.0.0.1_10000.downstream_cx_total").inc(4)
    store.counter("tcp.egress.downstream_cx_tx_bytes_total").inc(1024)
    store.gauge("server.live").set(1)
    hist = store.histogram("cluster.demo.upstream_rq_time")
    for value in (0.3, 4, 12.5, 700):
        hist.record(value)
    return store


def _families(store: Store, query: StatsQuery | None = None) -> dict[str, tuple[str, list[Sample]]]:
    text = render_prometheus(store, query or StatsQuery()).decode()
    return {f.name: (f.type, list(f.samples)) for f in text_string_to_metric_families(text)}


def test_counters_gauges_with_envoy_names_and_labels() -> None:
    families = _families(_populated())
    kind, samples = families["envoy_cluster_upstream_rq_xx"]
    assert kind == "counter"
    by_labels = {tuple(sorted(s.labels.items())): s.value for s in samples}
    assert by_labels == {
        (("envoy_cluster_name", "demo"), ("envoy_response_code_class", "2")): 5,
        (("envoy_cluster_name", "demo"), ("envoy_response_code_class", "5")): 2,
        (("envoy_cluster_name", "other"), ("envoy_response_code_class", "2")): 1,
    }
    kind, samples = families["envoy_cluster_upstream_rq"]
    assert kind == "counter"
    assert [(s.name, s.labels, s.value) for s in samples] == [
        ("envoy_cluster_upstream_rq_total", {"envoy_cluster_name": "demo"}, 7)
    ]
    assert families["envoy_cluster_upstream_cx_active"][0] == "gauge"
    assert families["envoy_cluster_upstream_cx_active"][1][0].value == 3
    assert families["envoy_http_downstream_rq"][1][0].labels == {
        "envoy_http_conn_manager_prefix": "ingress_http"
    }
    assert families["envoy_listener_downstream_cx"][1][0].labels == {
        "envoy_listener_address": "127.0.0.1_10000"
    }
    tcp = families["envoy_tcp_downstream_cx_tx_bytes"][1][0]
    assert (tcp.name, tcp.labels, tcp.value) == (
        "envoy_tcp_downstream_cx_tx_bytes_total",
        {"envoy_tcp_prefix": "egress"},
        1024,
    )
    assert families["envoy_server_live"][1][0].labels == {}


def test_histogram_buckets_sum_count() -> None:
    kind, samples = _families(_populated())["envoy_cluster_upstream_rq_time"]
    assert kind == "histogram"
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert buckets["0.5"] == 1
    assert buckets["5"] == 2
    assert buckets["25"] == 3
    assert buckets["500"] == 3
    assert buckets["1000"] == 4
    assert buckets["3600000"] == 4
    assert buckets["+Inf"] == 4
    assert len(buckets) == 20
    sums = [s for s in samples if s.name == "envoy_cluster_upstream_rq_time_sum"]
    counts = [s for s in samples if s.name == "envoy_cluster_upstream_rq_time_count"]
    assert sums[0].value == 0.3 + 4 + 12.5 + 700
    assert counts[0].value == 4
    assert all(s.labels.get("envoy_cluster_name") == "demo" for s in samples)


def test_usedonly_and_filter_apply_to_envoy_names() -> None:
    families = _families(_populated(), StatsQuery.from_params([("usedonly", "")]))
    assert "envoy_cluster_upstream_cx_destroy" not in families
    families = _families(_populated(), StatsQuery.from_params([("filter", r"^tcp\.")]))
    assert list(families) == ["envoy_tcp_downstream_cx_tx_bytes"]


def test_colliding_families_fall_back_instead_of_merging() -> None:
    store = Store()
    # Both would be family `envoy_cluster_x` with label demo, one counter one gauge.
    store.counter("cluster.demo.x").inc()
    store.gauge("cluster.demo.x_gauge_is_fine").set(1)
    store.gauge("cluster.other.x").set(4)  # same family name as the counter, different type
    families = _families(store)
    assert families["envoy_cluster_x"][0] == "counter"
    assert families["envoy_cluster_other_x"][1][0].value == 4
    assert families["envoy_cluster_other_x"][1][0].labels == {}


def test_sanitize() -> None:
    assert sanitize("listener.[__1]_80.x-y") == "listener____1__80_x_y"


async def test_a_listeners_default_stat_prefix_is_envoys_and_tags_whole() -> None:
    """Without a stat_prefix, a listener's stats are named by its address as Envoy names
    them (listener.127.0.0.1_PORT.*, the configured port), so the Prometheus
    listener_address tag is the whole address, not its first three octets."""
    from tests.proxy.harness import bootstrap, cluster, http_listener, running_proxy

    async with running_proxy(bootstrap([http_listener()], [cluster("backend", [1])])) as proxy:
        port = 0  # as configured: the name is fixed before the port is bound
        prefix = proxy.listeners[0].config.stat_prefix
        assert prefix == f"127.0.0.1_{port}"
        text = render_prometheus(proxy.store, StatsQuery()).decode()
    family = "envoy_listener_downstream_cx_total"
    assert f'{family}{{envoy_listener_address="127.0.0.1_{port}"}}' in text
