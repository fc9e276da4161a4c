from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from remora.proxy.admin.messages import AdminRequest, AdminResponse
from remora.proxy.admin.router import dispatch

from .support import StaticContext, populate


def _call(context: StaticContext, target: str, method: str = "GET") -> AdminResponse:
    return dispatch(context, AdminRequest.from_target(method, target))


def test_ready_follows_state(context: StaticContext) -> None:
    assert (_call(context, "/ready").status, _call(context, "/ready").body) == (200, b"LIVE\n")
    context.live = False
    response = _call(context, "/ready")
    assert (response.status, response.body) == (503, b"INITIALIZING\n")


def test_healthcheck_fail_and_ok(context: StaticContext) -> None:
    response = _call(context, "/healthcheck/fail", "POST")
    assert (response.status, response.body) == (200, b"OK\n")
    assert context.healthcheck_failed
    ready = _call(context, "/ready")
    assert (ready.status, ready.body) == (503, b"DRAINING\n")
    assert _call(context, "/healthcheck/ok", "POST").body == b"OK\n"
    assert not context.healthcheck_failed
    assert _call(context, "/ready").status == 200


def test_quitquitquit_defers_shutdown_until_after_response(context: StaticContext) -> None:
    response = _call(context, "/quitquitquit", "POST")
    assert (response.status, response.body) == (200, b"OK\n")
    assert context.shutdown_requests == 0  # the server runs `after` once the bytes are out
    assert response.after is not None
    response.after()
    assert context.shutdown_requests == 1


def test_server_info_and_config_dump_are_json(context: StaticContext) -> None:
    info = _call(context, "/server_info")
    assert info.content_type == "application/json"
    assert json.loads(info.body)["state"] == "LIVE"
    dump = json.loads(_call(context, "/config_dump").body)
    assert dump["configs"][0]["@type"].endswith("BootstrapConfigDump")


def test_stats_formats(context: StaticContext) -> None:
    populate(context.stats)
    text = _call(context, "/stats").body.decode()
    assert "cluster.demo.upstream_rq_total: 40\n" in text
    assert "cluster.demo.upstream_rq_time: P0(nan,0.7)" in text
    doc = json.loads(_call(context, "/stats?format=json").body)
    assert {"name": "cluster.demo.upstream_rq_2xx", "value": 37} in doc["stats"]
    via_format = _call(context, "/stats?format=prometheus")
    via_path = _call(context, "/stats/prometheus")
    assert via_format.body == via_path.body
    assert via_path.content_type.startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(via_path.body.decode())}
    assert "envoy_cluster_upstream_rq_xx" in names


def test_stats_filter_usedonly(context: StaticContext) -> None:
    populate(context.stats)
    body = _call(context, "/stats?usedonly&filter=%5Ecluster%5C.demo%5C.upstream_cx").body
    assert body == b"cluster.demo.upstream_cx_active: 2\n"


def test_stats_bad_parameters_are_400(context: StaticContext) -> None:
    bad_regex = _call(context, "/stats?filter=(oops")
    assert bad_regex.status == 400
    assert b"filter" in bad_regex.body
    assert _call(context, "/stats?format=xml").status == 400
    assert _call(context, "/stats/prometheus?filter=[").status == 400


def test_clusters_and_listeners_formats(context: StaticContext) -> None:
    assert b"demo::127.0.0.1:8080::rq_total::40\n" in _call(context, "/clusters").body
    assert json.loads(_call(context, "/clusters?format=json").body)["cluster_statuses"]
    assert _call(context, "/listeners").body == b"ingress::127.0.0.1:10000\nv6::[::1]:10001\n"
    listeners = json.loads(_call(context, "/listeners?format=json").body)
    assert listeners["listener_statuses"][0]["name"] == "ingress"
