"""The demo's bootstrap: an ordinary Envoy v3 config, built as data so the ports can be chosen at
start. `remora demo --print-config` shows it, so users can copy it as a starting point."""

from __future__ import annotations

from typing import Any

_TYPES = "type.googleapis.com/envoy.extensions"


def demo_bootstrap(
    upstream_ports: list[int],
    http_port: int = 10000,
    tcp_port: int = 10001,
    admin_port: int = 9901,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for port in upstream_ports
    ]
    access_log = [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {"@type": f"{_TYPES}.access_loggers.stream.v3.StdoutAccessLog"},
        }
    ]
    hcm = {
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_http",
        "access_log": access_log,
        "http_protocol_options": {"accept_http_10": True},
        "request_headers_timeout": "10s",
        "common_http_protocol_options": {"idle_timeout": "300s"},
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "route_config": {
            "name": "demo_routes",
            "virtual_hosts": [
                {
                    "name": "demo",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/healthz"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                        },
                        {
                            "match": {"prefix": "/old/"},
                            "redirect": {"prefix_rewrite": "/new/", "response_code": "FOUND"},
                        },
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "demo", "timeout": "15s"},
                            "response_headers_to_add": [
                                {"header": {"key": "x-served-by", "value": "remora"}}
                            ],
                        },
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    tcp = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "demo_tcp",
        "cluster": "demo",
    }
    return {
        "admin": {"address": {"socket_address": {"address": host, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": {"socket_address": {"address": host, "port_value": http_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                },
                {
                    "name": "tcp",
                    "address": {"socket_address": {"address": host, "port_value": tcp_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.tcp_proxy", "typed_config": tcp}
                            ]
                        }
                    ],
                },
            ],
            "clusters": [
                {
                    "name": "demo",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {
                        "cluster_name": "demo",
                        "endpoints": [{"lb_endpoints": endpoints}],
                    },
                }
            ],
        },
    }
