"""The admin endpoints, as functions from (context, request) to response.

Sans-IO: each handler reads the `AdminContext`, renders, and returns an `AdminResponse`. Status
codes and bodies follow Envoy's admin handlers so existing probes and scripts keep working
(`/ready` answers `LIVE` or 503, mutations answer `OK`).
"""

from __future__ import annotations

from remora.proxy.stats import InvalidStatsQuery, StatsQuery, render_json, render_text

from .certs import certs_json
from .clusters import clusters_json, clusters_text
from .context import AdminContext
from .listeners import listeners_json, listeners_text
from .messages import JSON, AdminRequest, AdminResponse, json_response, text

_STATS_FORMATS = ("text", "json", "prometheus")


def ready(context: AdminContext, request: AdminRequest) -> AdminResponse:
    if context.is_ready():
        return text(200, "LIVE\n")
    state = context.server_info().get("state")
    # Envoy reports the server state name; fall back to its pre-LIVE state when ours has none.
    label = state if isinstance(state, str) and state and state != "LIVE" else "INITIALIZING"
    return text(503, f"{label}\n")


def server_info(context: AdminContext, request: AdminRequest) -> AdminResponse:
    return json_response(context.server_info())


def config_dump(context: AdminContext, request: AdminRequest) -> AdminResponse:
    return json_response(context.config_dump())


def _stats_query(request: AdminRequest) -> StatsQuery | AdminResponse:
    try:
        return StatsQuery.from_params(request.params)
    except InvalidStatsQuery as exc:
        return text(400, f"{exc}\n")


def stats(context: AdminContext, request: AdminRequest) -> AdminResponse:
    fmt = request.param("format") or "text"
    if fmt not in _STATS_FORMATS:
        return text(400, f"usage: /stats?format=({'|'.join(_STATS_FORMATS)})\n")
    query = _stats_query(request)
    if isinstance(query, AdminResponse):
        return query
    if fmt == "prometheus":
        return _prometheus(context, query)
    if fmt == "json":
        body = render_json(context.stats, query).encode("utf-8")
        return AdminResponse(status=200, body=body, content_type=JSON)
    return text(200, render_text(context.stats, query))


def stats_prometheus(context: AdminContext, request: AdminRequest) -> AdminResponse:
    query = _stats_query(request)
    if isinstance(query, AdminResponse):
        return query
    return _prometheus(context, query)


def _prometheus(context: AdminContext, query: StatsQuery) -> AdminResponse:
    # Imported on first use: prometheus-client is a start-up cost most runs never need.
    from remora.proxy.stats.render_prometheus import CONTENT_TYPE, render_prometheus

    body = render_prometheus(context.stats, query)
    return AdminResponse(status=200, body=body, content_type=CONTENT_TYPE)


def clusters(context: AdminContext, request: AdminRequest) -> AdminResponse:
    if request.param("format") == "json":
        body = clusters_json(context.clusters()) + "\n"
        return AdminResponse(status=200, body=body.encode("utf-8"), content_type=JSON)
    return text(200, clusters_text(context.clusters()))


def listeners(context: AdminContext, request: AdminRequest) -> AdminResponse:
    if request.param("format") == "json":
        body = listeners_json(context.listeners()) + "\n"
        return AdminResponse(status=200, body=body.encode("utf-8"), content_type=JSON)
    return text(200, listeners_text(context.listeners()))


def certs(context: AdminContext, request: AdminRequest) -> AdminResponse:
    body = certs_json(context.certificates()) + "\n"
    return AdminResponse(status=200, body=body.encode("utf-8"), content_type=JSON)


def healthcheck_fail(context: AdminContext, request: AdminRequest) -> AdminResponse:
    context.set_healthcheck_failed(True)
    return text(200, "OK\n")


def healthcheck_ok(context: AdminContext, request: AdminRequest) -> AdminResponse:
    context.set_healthcheck_failed(False)
    return text(200, "OK\n")


def quitquitquit(context: AdminContext, request: AdminRequest) -> AdminResponse:
    return text(200, "OK\n", after=context.request_shutdown)
