#!/usr/bin/env python3
"""Microbenchmark: what a route's retry_policy adds to a request that is not retried.

    .venv/bin/python bench/retry_cost.py [iterations]

A request on a route without a policy never creates retry state (the exchange tests one
attribute at each outcome point), so the figure here is all a policy costs when nothing fails:
the compiled RetryState's creation, its attempt bookkeeping, the response classification and
its teardown, run on the real objects of a real proxy config (listener, cluster, host, route).
Best of five runs, in nanoseconds per request; the machine's other load only slows a run down.

A whole-proxy comparison (wrk against `remora proxy`, CPU time per request) is too noisy on the
shared 2-core machine to resolve a difference this size: runs of one variant spread over 30%.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import uvloop

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.proxy.http.downstream import DownstreamConnection
from remora.proxy.http.exchange import Exchange
from remora.proxy.http.listener import HttpListener
from remora.proxy.http.request import Request
from remora.proxy.http.retry import RetryState
from remora.proxy.http.route import RouteRequest
from remora.proxy.server import ProxyServer

VARIANTS: dict[str, dict[str, Any]] = {
    "retry_on 5xx": {"retry_on": "5xx,reset"},
    "retry_on 5xx + per_try_timeout": {"retry_on": "5xx,reset", "per_try_timeout": "1s"},
    "retriable-headers (decodes the head)": {
        "retry_on": "retriable-headers",
        "retriable_headers": [{"name": "x-again"}],
    },
}


def _bootstrap(policy: dict[str, Any]) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {
            "name": "r",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "backend", "retry_policy": policy},
                        }
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
    endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
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
                }
            ],
            "clusters": [
                {
                    "name": "backend",
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": "backend",
                        "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                    },
                }
            ],
        }
    }


async def _measure(policy: dict[str, Any], iterations: int) -> float:
    server = ProxyServer(compile_bootstrap(parse_dict(_bootstrap(policy))), drain_timeout=0.1)
    await server.start()
    try:
        listener = server.listeners[0].runtime
        assert isinstance(listener, HttpListener)
        downstream = DownstreamConnection(listener)
        request = Request(1 << 20, lambda _: None)
        request.headers = [("host", "example.com"), ("user-agent", "bench"), ("accept", "*/*")]
        route = listener.hcm.route_table.route(RouteRequest("GET", "/", "example.com"))
        assert route is not None and route.retry_policy is not None
        cluster = listener.clusters["backend"]
        host = cluster.hosts[0]
        exchange = Exchange(downstream, request)
        raw = [(b"content-length", b"2"), (b"content-type", b"text/plain")]
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(iterations):
                state = RetryState(exchange, route.retry_policy, cluster, None, 1 << 20)
                state.attempt_started(host, time.monotonic())
                state.request_headers([])
                state.on_response(200, raw)
                state.close()
            best = min(best, time.perf_counter() - started)
        return best / iterations * 1e9
    finally:
        await server.close()


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for name, policy in VARIANTS.items():
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # the proxy's loop
            ns = runner.run(_measure(policy, iterations))
        print(f"{name:40} {ns:7.0f} ns per request")


if __name__ == "__main__":
    main()
