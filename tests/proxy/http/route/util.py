"""Builds route tables from YAML-shaped dicts, the way users write `route_config`."""

from __future__ import annotations

import random
from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from remora.config.errors import ErrorCollector
from remora.proxy.http.route import (
    RouteRequest,
    RouteResult,
    RouteTable,
    compile_route_configuration,
)

PATH = "route_config"


def parse(config: dict[str, Any]) -> route_pb2.RouteConfiguration:
    return json_format.ParseDict(config, route_pb2.RouteConfiguration())


def compile_dict(
    config: dict[str, Any], rng: random.Random | None = None
) -> tuple[RouteTable, list[tuple[str, str]]]:
    errors = ErrorCollector()
    table = compile_route_configuration(parse(config), PATH, errors, rng=rng)
    return table, [(e.path, e.message) for e in errors.errors]


def build(config: dict[str, Any], rng: random.Random | None = None) -> RouteTable:
    table, errors = compile_dict(config, rng)
    assert errors == [], errors
    return table


def routes(*entries: dict[str, Any], domains: list[str] | None = None, **extra: Any) -> RouteTable:
    """A one-virtual-host table with `entries` as its routes."""
    vhost = {"name": "vh", "domains": domains or ["*"], "routes": list(entries)}
    return build({"name": "rc", "virtual_hosts": [vhost], **extra})


def request(
    path: str = "/",
    authority: str = "example.com",
    headers: list[tuple[str, str]] | None = None,
    method: str = "GET",
    scheme: str = "http",
) -> RouteRequest:
    return RouteRequest(method, path, authority, headers or [], scheme)


def route_name(table: RouteTable, req: RouteRequest) -> str | None:
    result = table.route(req)
    return None if result is None else result.route_name


def must_route(table: RouteTable, req: RouteRequest) -> RouteResult:
    result = table.route(req)
    assert result is not None, f"no route for {req}"
    return result


def errors_of(config: dict[str, Any]) -> list[tuple[str, str]]:
    return compile_dict(config)[1]


def cluster_route(name: str, match: dict[str, Any], **action: Any) -> dict[str, Any]:
    return {"name": name, "match": match, "route": {"cluster": name, **action}}
