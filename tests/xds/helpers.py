"""Small Envoy resources for the xDS tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from remora.proxy.server import ProxyServer
from remora.xds import types
from remora.xds.snapshot import Snapshot

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def cluster(name: str, timeout: str = "1s") -> cluster_pb2.Cluster:
    return json_format.ParseDict(
        {
            "name": name,
            "type": "EDS",
            "connect_timeout": timeout,
            "eds_cluster_config": {"eds_config": {"ads": {}}},
        },
        cluster_pb2.Cluster(),
    )


def cla(name: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    return json_format.ParseDict(
        {
            "cluster_name": name,
            "endpoints": [
                {
                    "load_balancing_weight": 1,
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": p}
                                }
                            }
                        }
                        for p in ports
                    ],
                }
            ],
        },
        endpoint_pb2.ClusterLoadAssignment(),
    )


def route(name: str, cluster_name: str) -> route_pb2.RouteConfiguration:
    return json_format.ParseDict(
        {
            "name": name,
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}],
                }
            ],
        },
        route_pb2.RouteConfiguration(),
    )


def listener(name: str) -> listener_pb2.Listener:
    return listener_pb2.Listener(name=name)


def request(
    type_url: str,
    names: list[str] | None = None,
    nonce: str = "",
    version: str = "",
    error: str | None = None,
    node_id: str = "n1",
) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=names or [], response_nonce=nonce, version_info=version
    )
    req.node.id = node_id
    if error is not None:
        req.error_detail.code = 3
        req.error_detail.message = error
    return req


def delta_request(
    type_url: str,
    subscribe: list[str] | None = None,
    unsubscribe: list[str] | None = None,
    nonce: str = "",
    initial: dict[str, str] | None = None,
    error: str | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=subscribe or [],
        resource_names_unsubscribe=unsubscribe or [],
        response_nonce=nonce,
        initial_resource_versions=initial or {},
    )
    req.node.id = "n1"
    if error is not None:
        req.error_detail.code = 3
        req.error_detail.message = error
    return req


def parse(data: bytes) -> discovery_pb2.DiscoveryResponse:
    return discovery_pb2.DiscoveryResponse.FromString(data)


def parse_delta(data: bytes) -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse.FromString(data)


def names_in(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for item in response.resources:
        message = types.MESSAGES[item.type_url]()
        item.Unpack(message)
        out.append(types.resource_name(message))
    return out


def tcp_listener_dict(name: str, port: int, prefix: str = "") -> dict[str, Any]:
    """A tcp_proxy listener to `backend`, as bootstrap JSON (static) or LDS (dynamic) spell it."""
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": TCP_PROXY, "stat_prefix": prefix or name,
                             "cluster": "backend"},
        }]}],
    }  # fmt: skip


def listener_snapshot(*listeners: dict[str, Any]) -> Snapshot:
    return Snapshot.build([json_format.ParseDict(ls, listener_pb2.Listener()) for ls in listeners])


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.02)


def bound(proxy: ProxyServer) -> dict[str, int]:
    return {running.name: running.port for running in proxy.listeners}
