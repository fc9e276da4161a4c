"""HTTP routing: Envoy v3 RouteConfiguration compiled into an immutable table, matched sans-IO.

    table = compile_route_configuration(route_config, "...route_config", errors)
    result = table.route(RouteRequest("GET", "/a?x=1", "example.com", headers, "http"))

`result` is None when no virtual host or route matches (the caller answers 404).
"""

from __future__ import annotations

from remora.proxy.http.route import fields as _fields  # noqa: F401  (registers supported fields)
from remora.proxy.http.route.actions import (
    DEFAULT_TIMEOUT,
    ClusterAction,
    ClusterTarget,
    DirectResponseAction,
    RedirectAction,
)
from remora.proxy.http.route.compiler import compile_route_configuration
from remora.proxy.http.route.headers import HEADER_VALUE_COMMANDS
from remora.proxy.http.route.table import RouteRequest, RouteResult, RouteTable

__all__ = [
    "DEFAULT_TIMEOUT",
    "HEADER_VALUE_COMMANDS",
    "ClusterAction",
    "ClusterTarget",
    "DirectResponseAction",
    "RedirectAction",
    "RouteRequest",
    "RouteResult",
    "RouteTable",
    "compile_route_configuration",
]
