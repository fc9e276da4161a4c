"""Builds Envoy bootstraps for tests and runs the real proxy against real demo upstreams."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.demo.upstream import DemoUpstream
from remora.proxy.server import ProxyServer

HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def endpoints(ports: list[int], host: str = "127.0.0.1") -> list[dict[str, Any]]:
    return [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": p}}}}
        for p in ports
    ]


def cluster(name: str, ports: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": endpoints(ports)}],
        },
        **extra,
    }


def http_listener(
    routes: list[dict[str, Any]] | None = None,
    virtual_hosts: list[dict[str, Any]] | None = None,
    name: str = "http",
    host: str = "127.0.0.1",
    **hcm: Any,
) -> dict[str, Any]:
    if virtual_hosts is None:
        virtual_hosts = [
            {
                "name": "all",
                "domains": ["*"],
                "routes": routes or [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}],
            }
        ]
    typed_config = {
        "@type": HCM_TYPE,
        "stat_prefix": name,
        "route_config": {"name": "routes", "virtual_hosts": virtual_hosts},
        "http_filters": [ROUTER],
        **hcm,
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": host, "port_value": 0}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": typed_config,
                    }
                ]
            }
        ],
    }


def tcp_listener(cluster_name: str, name: str = "tcp", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {
                            "@type": TCP_PROXY_TYPE,
                            "stat_prefix": name,
                            "cluster": cluster_name,
                            **extra,
                        },
                    }
                ]
            }
        ],
    }


def routes_to(cluster_name: str) -> list[dict[str, Any]]:
    return [{"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]


def direct_routes(body: str) -> list[dict[str, Any]]:
    """Every path answered by the proxy itself, 200 with `body`."""
    return [
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": body}},
        }
    ]


def set_routes(config: dict[str, Any], routes: list[dict[str, Any]], listener: int = 0) -> None:
    """Replace the routes of an `http_listener` inside a `bootstrap`."""
    hcm = config["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"] = routes


FILE_ACCESS_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


def file_access_log(path: object, text_format: str) -> list[dict[str, Any]]:
    """An `access_log` list with one Envoy file logger writing `text_format` to `path`."""
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": FILE_ACCESS_LOG_TYPE,
                "path": str(path),
                "log_format": {"text_format_source": {"inline_string": text_format}},
            },
        }
    ]


def bootstrap(
    listeners: list[dict[str, Any]], clusters: list[dict[str, Any]], admin: bool = True
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "static_resources": {"listeners": copy.deepcopy(listeners), "clusters": clusters}
    }
    if admin:
        config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    return config


@asynccontextmanager
async def running_proxy(config: dict[str, Any]) -> AsyncIterator[ProxyServer]:
    server = ProxyServer(compile_bootstrap(parse_dict(config)), drain_timeout=1.0)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def demo_upstreams(count: int = 2) -> AsyncIterator[list[DemoUpstream]]:
    upstreams = [DemoUpstream(name=f"up-{i}", host="127.0.0.1", port=0) for i in range(count)]
    for upstream in upstreams:
        await upstream.start()
    try:
        yield upstreams
    finally:
        for upstream in upstreams:
            await upstream.close()


def stat_value(stats: str, name: str) -> int:
    """One counter or gauge from the admin's text /stats."""
    match = re.search(rf"^{re.escape(name)}: (\d+)$", stats, re.M)
    assert match, name
    return int(match.group(1))


def host_stat(clusters: str, cluster_name: str, port: int, stat: str) -> int:
    """One per-host value from the admin's text /clusters."""
    match = re.search(rf"^{cluster_name}::127\.0\.0\.1:{port}::{stat}::(\d+)$", clusters, re.M)
    assert match, (stat, clusters)
    return int(match.group(1))


def health_flags(clusters: str, cluster_name: str) -> dict[int, str]:
    """Port -> health_flags (`healthy`, `/failed_active_hc`...) from the text /clusters."""
    flags: dict[int, str] = {}
    for line in clusters.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster_name and parts[2] == "health_flags":
            flags[int(parts[1].rsplit(":", 1)[1])] = parts[3]
    return flags


async def admin_get(proxy: ProxyServer, path: str) -> str:
    assert proxy.admin is not None
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{proxy.admin.port}{path}")).text


async def read_log(path: Path, lines: int) -> list[str]:
    """The access log once it has `lines` lines (loggers write after the response is sent)."""
    deadline = time.monotonic() + 5
    while True:
        text = path.read_text() if path.exists() else ""
        if text.count("\n") >= lines:
            return text.splitlines()
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.05)
