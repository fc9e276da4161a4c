"""The admin endpoint table and dispatch: path lookup, POST-only mutations, error containment.

Mirrors Envoy's admin: a path matches an endpoint exactly (query string aside); an unknown path is
404 with the list of endpoints; an endpoint that mutates server state refuses other methods with
405 and `Method GET not allowed, POST required.` (what Envoy's code does; its docs say 400). A
failure inside a handler becomes a 500 naming the endpoint, never an exception into the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from . import handlers
from .context import AdminContext
from .messages import AdminRequest, AdminResponse, text

_log = logging.getLogger(__name__)

Handler = Callable[[AdminContext, AdminRequest], AdminResponse]

# Envoy adds these to every admin response so browsers neither sniff nor cache admin output.
FALLBACK_HEADERS: tuple[tuple[str, str], ...] = (
    ("cache-control", "no-cache, max-age=0"),
    ("x-content-type-options", "nosniff"),
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    help: str
    handler: Handler
    mutates: bool = False


def _index(context: AdminContext, request: AdminRequest) -> AdminResponse:
    return text(200, help_text())


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/", "Admin home page", _index),
    Endpoint("/certs", "print certs on machine", handlers.certs),
    Endpoint("/clusters", "upstream cluster status (?format=json)", handlers.clusters),
    Endpoint("/config_dump", "dump current configs", handlers.config_dump),
    Endpoint(
        "/healthcheck/fail",
        "cause the server to fail health checks",
        handlers.healthcheck_fail,
        mutates=True,
    ),
    Endpoint(
        "/healthcheck/ok",
        "cause the server to pass health checks",
        handlers.healthcheck_ok,
        mutates=True,
    ),
    Endpoint("/help", "print out list of admin commands", _index),
    Endpoint("/listeners", "print listener info (?format=json)", handlers.listeners),
    Endpoint("/quitquitquit", "exit the server", handlers.quitquitquit, mutates=True),
    Endpoint(
        "/ready", "print server state, return 200 if LIVE, otherwise return 503", handlers.ready
    ),
    Endpoint("/server_info", "print server version/status information", handlers.server_info),
    Endpoint(
        "/stats",
        "print server stats (?format=json|prometheus, ?filter=<regex>, ?usedonly, ?type=)",
        handlers.stats,
    ),
    Endpoint(
        "/stats/prometheus",
        "print server stats in prometheus format (?filter=<regex>, ?usedonly)",
        handlers.stats_prometheus,
    ),
)

_BY_PATH: dict[str, Endpoint] = {endpoint.path: endpoint for endpoint in ENDPOINTS}


def help_text() -> str:
    lines = ["admin commands are:"]
    for endpoint in sorted(ENDPOINTS, key=lambda e: e.path):
        method = " (POST)" if endpoint.mutates else ""
        lines.append(f"  {endpoint.path}{method}: {endpoint.help}")
    return "".join(line + "\n" for line in lines)


def dispatch(context: AdminContext, request: AdminRequest) -> AdminResponse:
    endpoint = _BY_PATH.get(request.path)
    if endpoint is None:
        response = text(404, "invalid path. " + help_text())
    elif endpoint.mutates and request.method != "POST":
        response = text(
            405,
            f"Method {request.method} not allowed, POST required.\n",
            headers=(("allow", "POST"),),
        )
    else:
        try:
            response = endpoint.handler(context, request)
        except Exception as exc:
            _log.exception("admin handler %s failed", endpoint.path)
            response = text(
                500, f"internal error in {endpoint.path}: {type(exc).__name__}: {exc}\n"
            )
    return replace(response, headers=response.headers + FALLBACK_HEADERS)
