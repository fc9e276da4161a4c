"""remora with one worker, from an Envoy v3 bootstrap modelled on `remora demo`'s, minus the
access log and extra routes (the other peers log nothing either)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from suite.peers.base import IDLE_TIMEOUT_S, Launch, Listener, Mode, Peer

_EXT = "type.googleapis.com/envoy.extensions"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _http_filter(listener: Listener) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": f"{_EXT}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "bench",
            "common_http_protocol_options": {"idle_timeout": f"{IDLE_TIMEOUT_S}s"},
            "route_config": {
                "name": "bench",
                "virtual_hosts": [
                    {
                        "name": "bench",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                    }
                ],
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": f"{_EXT}.filters.http.router.v3.Router"},
                }
            ],
        },
    }


def _tcp_filter() -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": f"{_EXT}.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "bench_tcp",
            "cluster": "upstream",
        },
    }


def bootstrap(listener: Listener) -> dict[str, Any]:
    network_filter = _http_filter(listener) if listener.mode == "http" else _tcp_filter()
    limit = listener.max_connections
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": _address(listener.host, listener.port),
                    "filter_chains": [{"filters": [network_filter]}],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "5s",
                    "circuit_breakers": {
                        "thresholds": [
                            {
                                "max_connections": limit,
                                "max_pending_requests": limit,
                                "max_requests": limit,
                            }
                        ]
                    },
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": _address(
                                                listener.upstream_host, listener.upstream_port
                                            )
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        }
    }


class Remora(Peer):
    name = "remora"
    title = "remora (1 worker, uvloop)"
    modes: frozenset[Mode] = frozenset({"http", "tcp"})

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return f"remora {dist_version('remora')}"
        except PackageNotFoundError:
            return "remora (source tree)"

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        path = workdir / "remora.json"
        path.write_text(json.dumps(bootstrap(listener), indent=2))
        argv = [sys.executable, "-m", "remora", "proxy", "--config", str(path)]
        # No hot restart socket (Envoy's flag too): two proxies in series, or a remora already
        # running on this host, would otherwise collide on @remora_hot_restart_0_0.
        return Launch(argv=[*argv, "--disable-hot-restart", "--log-level", "error"])
