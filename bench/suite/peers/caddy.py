"""Caddy's `reverse_proxy` with GOMAXPROCS=1, from a JSON config (admin API and TLS off).

Caddy has no TCP proxy without the third-party layer4 plugin, which Debian's build lacks.

The realistic profile (suite/realistic.py): the server's access log to a file (Caddy's access log
is structured: JSON lines, its default encoder; Debian's build has no plugin for a combined-style
text format); `{http.request.uuid}` sent upstream as X-Request-ID; the routes in order, each a
matcher set (`path`, `path_regexp`, `header`, `header_regexp`) with its own `reverse_proxy` and
a `headers` handler setting the route's name on the response.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from suite.peers.base import (
    IDLE_TIMEOUT_S,
    UPSTREAM_KEEPALIVE,
    Launch,
    Listener,
    Mode,
    Peer,
    command_version,
)
from suite.realistic import ALL_ROUTES, REQUEST_ID_HEADER, ROUTE_HEADER, HeaderCond, Route

ACCESS_LOGGER = "bench"  # the server's access log is the logger http.log.access.bench


def _header_name(name: str) -> str:
    return "Host" if name == ":authority" else "-".join(p.capitalize() for p in name.split("-"))


def _matcher(route: Route) -> dict[str, Any]:
    match: dict[str, Any] = {}
    if route.path_regex is not None:
        match["path_regexp"] = {"pattern": route.path_regex}
    elif route.prefix != "/":
        match["path"] = [f"{route.prefix}*"]
    cond: HeaderCond | None = route.header
    if cond is not None:
        name = _header_name(cond.name)
        if cond.match == "regex":
            match["header_regexp"] = {name: {"pattern": cond.value}}
        elif cond.match == "present":
            match["header"] = {name: []}  # an empty list: the field is there, any value
        else:
            match["header"] = {name: [cond.value + ("*" if cond.match == "prefix" else "")]}
    return match


def config(listener: Listener, access_log: Path | None = None) -> dict[str, Any]:
    idle = f"{IDLE_TIMEOUT_S}s"
    upstream = f"{listener.upstream_host}:{listener.upstream_port}"
    proxy: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": upstream}],
        "transport": {
            "protocol": "http",
            "keep_alive": {
                "enabled": True,
                "max_idle_conns_per_host": UPSTREAM_KEEPALIVE,
                "idle_timeout": idle,
            },
        },
    }
    server: dict[str, Any] = {
        "listen": [f"{listener.host}:{listener.port}"],
        "idle_timeout": idle,
        "automatic_https": {"disable": True},
        "routes": [{"handle": [proxy]}],
    }
    logs: dict[str, Any] = {"default": {"level": "ERROR"}}
    if listener.profile == "realistic":
        assert access_log is not None
        proxy["headers"] = {"request": {"set": {REQUEST_ID_HEADER: ["{http.request.uuid}"]}}}
        server["routes"] = [
            {
                **({"match": [m]} if (m := _matcher(route)) else {}),
                "handle": [
                    {"handler": "headers", "response": {"set": {ROUTE_HEADER: [route.name]}}},
                    proxy,
                ],
                "terminal": True,
            }
            for route in ALL_ROUTES
        ]
        server["logs"] = {"default_logger_name": ACCESS_LOGGER}
        access = f"http.log.access.{ACCESS_LOGGER}"
        logs["default"]["exclude"] = [access]
        logs["access"] = {
            "writer": {"output": "file", "filename": str(access_log), "roll": False},
            "encoder": {"format": "json"},
            "level": "INFO",
            "include": [access],
        }
    return {
        "admin": {"disabled": True},
        "logging": {"logs": logs},
        "apps": {"http": {"servers": {"bench": server}}},
    }


class Caddy(Peer):
    name = "caddy"
    title = "Caddy (reverse_proxy, GOMAXPROCS=1)"
    modes: frozenset[Mode] = frozenset({"http"})
    unsupported_reason = "no TCP proxy in Debian's Caddy (needs the layer4 plugin)"

    def _binary(self) -> str:
        return shutil.which("caddy") or "/usr/bin/caddy"

    def version(self) -> str:
        return "Caddy " + command_version([self._binary(), "version"])

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        directory = workdir / "caddy"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "caddy.json"
        access_log = directory / "access.log" if listener.profile == "realistic" else None
        path.write_text(json.dumps(config(listener, access_log), indent=2))
        env = {
            "GOMAXPROCS": "1",
            "HOME": str(directory),
            "XDG_CONFIG_HOME": str(directory / "config"),
            "XDG_DATA_HOME": str(directory / "data"),
        }
        argv = [self._binary(), "run", "--config", str(path)]
        return Launch(argv=argv, env=env, access_log=access_log)
