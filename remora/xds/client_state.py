"""The proxy's ADS client state, sans I/O (state of the world): responses in, requests out.

It follows the client half of Envoy's xDS protocol:
- CDS and LDS are wildcard subscriptions; EDS and RDS subscribe by name, the names being those the
  accepted clusters and listeners refer to;
- every response is answered with its nonce: an ACK carries the response's version, a NACK
  carries the last good version and `error_detail` naming each bad resource and field;
- a response is accepted or rejected as a whole, after compiling every resource with the same
  compilers and allowlist as a static bootstrap;
- a SotW CDS/LDS response is the full set: what it omits is removed;
- clusters warm until their endpoints arrive and listeners until their routes arrive; a warming
  update to something already serving leaves the old version serving meanwhile.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from remora.config import support
from remora.config.errors import ConfigError, ErrorCollector
from remora.proxy.http.config import HcmConfig
from remora.proxy.http.route import RouteTable, compile_route_configuration
from remora.proxy.listener_config import ListenerConfig, compile_listener
from remora.proxy.upstream.config import (
    ClusterConfig,
    DiscoveryType,
    EndpointConfig,
    compile_cluster,
    compile_endpoints,
)
from remora.xds import types

_INVALID_ARGUMENT = 3  # google.rpc.Code


@dataclass(frozen=True, slots=True)
class NackInfo:
    version: str
    nonce: str
    reason: str
    at: float


@dataclass(slots=True)
class _TypeState:
    version: str = ""  # last accepted
    nonce: str = ""  # last received
    names: frozenset[str] = frozenset()
    subscribed: bool = False
    last_nack: NackInfo | None = None
    resources: dict[str, tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)


class ClientState:
    def __init__(self, node: base_pb2.Node, lds: bool = True, cds: bool = True) -> None:
        self.node = node
        self.lds = lds
        self.cds = cds
        self.types = {t: _TypeState() for t in types.ORDER}
        self.clusters: dict[str, ClusterConfig] = {}
        self.endpoints: dict[str, tuple[EndpointConfig, ...]] = {}
        self.listeners: dict[str, ListenerConfig] = {}
        self.routes: dict[str, RouteTable] = {}
        self._active_clusters: dict[str, ClusterConfig] = {}
        self._active_listeners: dict[str, ListenerConfig] = {}

    # -- requests ------------------------------------------------------------------------------
    def _request(self, type_url: str, nonce: str = "") -> discovery_pb2.DiscoveryRequest:
        state = self.types[type_url]
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            version_info=state.version,
            response_nonce=nonce,
            resource_names=sorted(state.names),
        )
        request.node.CopyFrom(self.node)
        return request

    def initial_requests(self) -> list[discovery_pb2.DiscoveryRequest]:
        """The opening requests of a (new) stream: what we have and what we want."""
        out = []
        for type_url in types.ORDER:
            state = self.types[type_url]
            state.nonce = ""
            wildcard = (type_url == types.CLUSTER and self.cds) or (
                type_url == types.LISTENER and self.lds
            )
            state.subscribed = wildcard or bool(state.names)
            if state.subscribed:
                out.append(self._request(type_url))
        return out

    # -- responses -----------------------------------------------------------------------------
    def on_response(
        self, response: discovery_pb2.DiscoveryResponse
    ) -> tuple[bool, list[discovery_pb2.DiscoveryRequest]]:
        """Returns (config changed, requests to send)."""
        type_url = response.type_url
        state = self.types.get(type_url)
        if state is None:
            request = discovery_pb2.DiscoveryRequest(
                type_url=type_url, response_nonce=response.nonce, version_info=""
            )
            request.error_detail.code = _INVALID_ARGUMENT
            request.error_detail.message = f"remora does not subscribe to {type_url}"
            request.node.CopyFrom(self.node)
            return False, [request]
        state.nonce = response.nonce
        errors = ErrorCollector()
        messages = self._unpack(type_url, response, errors)
        compiled = self._compile(type_url, messages, errors)
        if errors.errors:
            reason = "; ".join(str(e) for e in errors.errors)
            state.last_nack = NackInfo(response.version_info, response.nonce, reason, time.time())
            nack = self._request(type_url, response.nonce)
            nack.error_detail.code = _INVALID_ARGUMENT
            nack.error_detail.message = reason
            return False, [nack]
        compiled()
        state.version = response.version_info
        dumps = {
            types.resource_name(m): (
                response.version_info,
                json_format.MessageToDict(m, preserving_proto_field_name=True),
            )
            for m in messages
        }
        if type_url in types.FULL_STATE:
            state.resources = dumps
        else:
            state.resources.update(dumps)
        requests = [self._request(type_url, response.nonce)]
        requests.extend(self._resubscribe())
        return True, requests

    def _unpack(
        self, type_url: str, response: discovery_pb2.DiscoveryResponse, errors: ErrorCollector
    ) -> list[Message]:
        messages: list[Message] = []
        seen: set[str] = set()
        for i, item in enumerate(response.resources):
            path = f"resources[{i}]"
            if item.type_url != type_url:
                errors.add(path, f"@type {item.type_url} in a {type_url} response")
                continue
            try:
                message = support.unpack_any(item, path)
            except ConfigError as exc:
                errors.extend([exc])
                continue
            name = types.resource_name(message)
            if name in seen:
                errors.add(path, f"duplicate resource {name!r}")
            seen.add(name)
            unsupported, _warnings = support.check(message, f"{path}({name})")
            errors.extend(unsupported)
            messages.append(message)
        return messages

    def _compile(
        self, type_url: str, messages: list[Message], errors: ErrorCollector
    ) -> Callable[[], None]:
        """Compile everything; return the function that installs it (called if no errors)."""
        if errors.errors:
            return lambda: None
        if type_url == types.CLUSTER:
            clusters = {}
            for i, message in enumerate(messages):
                path = f"resources[{i}]({types.resource_name(message)})"
                cluster = compile_cluster(message, path, errors)
                if cluster is not None:
                    clusters[cluster.name] = cluster
            return lambda: setattr(self, "clusters", clusters)
        if type_url == types.ENDPOINT:
            endpoints = {}
            for i, message in enumerate(messages):
                name = types.resource_name(message)
                path = f"resources[{i}]({name})"
                endpoints[name] = compile_endpoints(message, path, errors)
            return lambda: self.endpoints.update(endpoints)
        if type_url == types.LISTENER:
            listeners = {}
            for i, message in enumerate(messages):
                path = f"resources[{i}]({types.resource_name(message)})"
                listener = compile_listener(message, path, errors)
                if listener is not None:
                    listeners[listener.name] = listener
            return lambda: setattr(self, "listeners", listeners)
        routes = {}
        for i, message in enumerate(messages):
            name = types.resource_name(message)
            path = f"resources[{i}]({name})"
            routes[name] = compile_route_configuration(message, path, errors)
        return lambda: self.routes.update(routes)

    def _resubscribe(self) -> list[discovery_pb2.DiscoveryRequest]:
        """EDS/RDS names follow the accepted clusters and listeners."""
        wanted = {
            types.ENDPOINT: frozenset(
                c.eds_service_name
                for c in self.clusters.values()
                if c.discovery is DiscoveryType.EDS
            ),
            types.ROUTE: frozenset(
                listener.network_filter.rds_name
                for listener in self.listeners.values()
                if isinstance(listener.network_filter, HcmConfig)
                and listener.network_filter.rds_name
            ),
        }
        out = []
        for type_url, names in wanted.items():
            state = self.types[type_url]
            if names == state.names:
                continue
            state.names = names
            for gone in [n for n in state.resources if n not in names]:
                del state.resources[gone]
            store: dict[str, Any] = self.endpoints if type_url == types.ENDPOINT else self.routes
            for gone in [n for n in store if n not in names]:
                del store[gone]
            if names or state.subscribed:
                state.subscribed = True
                out.append(self._request(type_url, state.nonce))
        return out

    # -- what the proxy should run -------------------------------------------------------------
    def desired_clusters(self) -> dict[str, ClusterConfig]:
        active: dict[str, ClusterConfig] = {}
        for name, cluster in self.clusters.items():
            if cluster.discovery is DiscoveryType.EDS:
                endpoints = self.endpoints.get(cluster.eds_service_name)
                if endpoints is None:  # warming: keep the serving version if there is one
                    if name in self._active_clusters:
                        active[name] = self._active_clusters[name]
                    continue
                cluster = dataclasses.replace(cluster, endpoints=endpoints)
            active[name] = cluster
        self._active_clusters = active
        return dict(active)

    def desired_listeners(self) -> list[ListenerConfig]:
        active: dict[str, ListenerConfig] = {}
        for name, listener in self.listeners.items():
            hcm = listener.network_filter
            if isinstance(hcm, HcmConfig) and hcm.rds_name:
                table = self.routes.get(hcm.rds_name)
                if table is None:
                    if name in self._active_listeners:
                        active[name] = self._active_listeners[name]
                    continue
                listener = dataclasses.replace(
                    listener, network_filter=dataclasses.replace(hcm, route_table=table)
                )
            active[name] = listener
        self._active_listeners = active
        return list(active.values())

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for type_url, state in self.types.items():
            entry: dict[str, Any] = {"version_info": state.version, "nonce": state.nonce}
            if state.names:
                entry["resource_names"] = sorted(state.names)
            if state.last_nack is not None:
                entry["last_nack"] = {
                    "rejected_version": state.last_nack.version,
                    "reason": state.last_nack.reason,
                    "time": state.last_nack.at,
                }
            out[types.SHORT[type_url]] = entry
        return out
