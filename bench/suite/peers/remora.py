"""remora with one worker, from an Envoy v3 bootstrap modelled on `remora demo`'s: minus the
access log and extra routes for the minimal profile (the other peers log nothing either), or with
the realistic profile's file access log, request ids, routes and response header
(suite/realistic.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from suite.peers.base import IDLE_TIMEOUT_S, Launch, Listener, Mode, Peer, TlsFiles
from suite.realistic import ALL_ROUTES, ROUTE_HEADER, HeaderCond, Route

_EXT = "type.googleapis.com/envoy.extensions"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _header_matcher(cond: HeaderCond) -> dict[str, Any]:
    if cond.match == "present":
        return {"name": cond.name, "present_match": True}
    if cond.match == "regex":
        return {"name": cond.name, "string_match": {"safe_regex": {"regex": cond.value}}}
    return {"name": cond.name, "string_match": {cond.match: cond.value}}


def _realistic_route(route: Route) -> dict[str, Any]:
    match: dict[str, Any] = (
        {"safe_regex": {"regex": route.path_regex}}
        if route.path_regex is not None
        else {"prefix": route.prefix}
    )
    if route.header is not None:
        match["headers"] = [_header_matcher(route.header)]
    return {
        "name": route.name,
        "match": match,
        "route": {"cluster": route.name},
        "response_headers_to_add": [
            {
                "header": {"key": ROUTE_HEADER, "value": route.name},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def _http_filter(listener: Listener, access_log: Path | None) -> dict[str, Any]:
    if listener.profile == "realistic":
        routes = [_realistic_route(route) for route in ALL_ROUTES]
    else:
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    hcm: dict[str, Any] = {
        "@type": f"{_EXT}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "common_http_protocol_options": {"idle_timeout": f"{IDLE_TIMEOUT_S}s"},
        "route_config": {
            "name": "bench",
            "virtual_hosts": [{"name": "bench", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_EXT}.filters.http.router.v3.Router"},
            }
        ],
    }
    if listener.profile == "realistic":
        assert access_log is not None
        # Envoy's default, explicit: an x-request-id (UUID4) for every request without one.
        hcm["generate_request_id"] = True
        # No format given: Envoy's default format (remora's accesslog.formatter.DEFAULT_FORMAT).
        hcm["access_log"] = [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": f"{_EXT}.access_loggers.file.v3.FileAccessLog",
                    "path": str(access_log),
                },
            }
        ]
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}


def _tcp_filter() -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": f"{_EXT}.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "bench_tcp",
            "cluster": "upstream",
        },
    }


def _cluster(name: str, listener: Listener) -> dict[str, Any]:
    limit = listener.max_connections
    address = _address(listener.upstream_host, listener.upstream_port)
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "circuit_breakers": {
            "thresholds": [
                {"max_connections": limit, "max_pending_requests": limit, "max_requests": limit}
            ]
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }
    if listener.upstream_tls is not None:
        files = listener.upstream_tls
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": f"{_TLS}.UpstreamTlsContext",
                "sni": "localhost",
                "common_tls_context": {
                    "tls_certificates": [_certificate(files)],
                    "validation_context": {"trusted_ca": {"filename": str(files.cert)}},
                },
            },
        }
    return cluster


_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"


def _certificate(files: TlsFiles) -> dict[str, Any]:
    return {
        "certificate_chain": {"filename": str(files.cert)},
        "private_key": {"filename": str(files.key)},
    }


def bootstrap(listener: Listener, access_log: Path | None = None) -> dict[str, Any]:
    """The bootstrap for `listener`; the realistic profile logs to `access_log`."""
    if listener.mode == "http":
        network_filter = _http_filter(listener, access_log)
    else:
        network_filter = _tcp_filter()
    realistic = listener.mode == "http" and listener.profile == "realistic"
    names = [route.name for route in ALL_ROUTES] if realistic else ["upstream"]
    chain: dict[str, Any] = {"filters": [network_filter]}
    if listener.tls is not None:
        common: dict[str, Any] = {
            "tls_certificates": [_certificate(listener.tls)],
            "alpn_protocols": ["http/1.1"],
        }
        downstream: dict[str, Any] = {
            "@type": f"{_TLS}.DownstreamTlsContext",
            "common_tls_context": common,
        }
        if listener.client_ca is not None:
            common["validation_context"] = {"trusted_ca": {"filename": str(listener.client_ca)}}
            downstream["require_client_certificate"] = True
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": downstream,
        }
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": _address(listener.host, listener.port),
                    "filter_chains": [chain],
                }
            ],
            "clusters": [_cluster(name, listener) for name in names],
        }
    }


class Remora(Peer):
    name = "remora"
    title = "remora (1 worker, uvloop)"
    modes: frozenset[Mode] = frozenset({"http", "tcp"})
    tls = True
    hop_mtls = True

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return f"remora {dist_version('remora')}"
        except PackageNotFoundError:
            return "remora (source tree)"

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        path = workdir / "remora.json"
        access_log = workdir / "access.log" if listener.profile == "realistic" else None
        path.write_text(json.dumps(bootstrap(listener, access_log), indent=2))
        argv = [sys.executable, "-m", "remora", "proxy", "--config", str(path)]
        # No hot restart socket (Envoy's flag too): two proxies in series, or a remora already
        # running on this host, would otherwise collide on @remora_hot_restart_0_0.
        argv += ["--disable-hot-restart", "--log-level", "error"]
        return Launch(argv=argv, access_log=access_log)
