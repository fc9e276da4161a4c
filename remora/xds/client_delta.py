"""The proxy's ADS client state for incremental (delta) xDS, sans I/O.

The client half of Envoy's incremental protocol, on the same compile/warm path as SotW
(`ClientResources`):
- CDS and LDS subscribe to `*`; EDS and RDS subscribe by name and, as clusters and listeners come
  and go, send `resource_names_subscribe` / `_unsubscribe` with no nonce (a spontaneous request);
- a response carries only changed resources, each with its own version, plus `removed_resources`
  naming those that no longer exist: changes merge into what we have, removals delete;
- every response is answered with its nonce: an ACK has no `error_detail`, a NACK has one naming
  each bad resource and field; a response is accepted or rejected as a whole, so after a NACK we
  hold exactly the versions we held before it (which is what the server assumes);
- a new stream carries `initial_resource_versions`: every resource we hold, so the server re-sends
  nothing unchanged and names in `removed_resources` what vanished while we were away.
"""

from __future__ import annotations

import time
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from remora.config.errors import ErrorCollector
from remora.xds import client_resources, types
from remora.xds.client_resources import (
    INVALID_ARGUMENT,
    ClientResources,
    NackInfo,
    SavedState,
    TypeState,
    save_state,
)

WILDCARD = "*"


class DeltaClientState:
    protocol = "delta"

    def __init__(self, node: base_pb2.Node, lds: bool = True, cds: bool = True) -> None:
        self.node = node
        self.wildcard = {types.CLUSTER: cds, types.LISTENER: lds}
        self.types = {t: TypeState() for t in types.ORDER}
        self.resources = ClientResources()

    def _request(
        self,
        type_url: str,
        nonce: str = "",
        subscribe: list[str] | None = None,
        unsubscribe: list[str] | None = None,
    ) -> discovery_pb2.DeltaDiscoveryRequest:
        return discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            response_nonce=nonce,
            resource_names_subscribe=subscribe or [],
            resource_names_unsubscribe=unsubscribe or [],
        )

    def initial_requests(self) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """A new stream: no state survives from the last one, so say what we want and have."""
        out: list[discovery_pb2.DeltaDiscoveryRequest] = []
        for type_url in types.ORDER:
            state = self.types[type_url]
            state.nonce = ""
            wildcard = self.wildcard.get(type_url, False)
            subscribe = [WILDCARD] if wildcard else sorted(state.names)
            state.subscribed = bool(subscribe)
            if not subscribe:
                continue
            request = self._request(type_url, subscribe=subscribe)
            request.initial_resource_versions.update(self.resources.versions(type_url))
            if not out:
                request.node.CopyFrom(self.node)  # the server reads it from the first message
            out.append(request)
        return out

    def on_response(
        self, response: discovery_pb2.DeltaDiscoveryResponse
    ) -> tuple[bool, list[discovery_pb2.DeltaDiscoveryRequest]]:
        """Returns (config changed, requests to send)."""
        type_url = response.type_url
        state = self.types.get(type_url)
        if state is None:
            nack = self._request(type_url, response.nonce)
            nack.error_detail.code = INVALID_ARGUMENT
            nack.error_detail.message = f"remora does not subscribe to {type_url}"
            return False, [nack]
        state.nonce = response.nonce
        errors = ErrorCollector()
        held = self.resources.versions(type_url)
        items = []
        for i, resource in enumerate(response.resources):
            if not resource.HasField("resource"):
                # A TTL heartbeat re-states a version we hold; anything else is an error.
                if held.get(resource.name) != resource.version:
                    errors.add(f"resources[{i}]({resource.name})", "resource body is missing")
                continue
            items.append((resource.name, resource.version, resource.resource))
        checked = self.resources.check(type_url, items, errors)
        compiled = self.resources.compile(type_url, checked, errors) if not errors.errors else {}
        woken: dict[str, dict[str, Any]] = {}
        if not errors.errors:
            self.resources.check_set(
                type_url, compiled, checked, errors, False, response.removed_resources
            )
            if type_url == types.SECRET:
                after = {**self.resources.secrets, **compiled}
                for name in response.removed_resources:
                    after.pop(name, None)
                woken = self.resources.wake(after)
        if errors.errors:
            return False, [self._nack(response, "; ".join(str(e) for e in errors.errors))]
        self.resources.install(
            type_url, compiled, checked, replace=False, removed=response.removed_resources
        )
        self.resources.install_woken(woken)
        state.version = response.system_version_info
        requests = [self._request(type_url, response.nonce)]
        requests.extend(self._resubscribe())
        return True, requests

    def _nack(
        self, response: discovery_pb2.DeltaDiscoveryResponse, reason: str
    ) -> discovery_pb2.DeltaDiscoveryRequest:
        state = self.types[response.type_url]
        state.nonce = response.nonce  # also after `reject` restored the state before it
        version = response.system_version_info
        state.last_nack = NackInfo(version, response.nonce, reason, time.time())
        nack = self._request(response.type_url, response.nonce)
        nack.error_detail.code = INVALID_ARGUMENT
        nack.error_detail.message = reason
        return nack

    def save(self) -> SavedState:
        return save_state(self.types, self.resources)

    def reject(
        self, saved: SavedState, response: discovery_pb2.DeltaDiscoveryResponse, reason: str
    ) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """Undo an accepted response that could not be applied, and NACK it instead."""
        self.types = dict(saved.types)
        self.resources.restore(saved.resources)
        return [self._nack(response, reason)]

    def _resubscribe(self) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """Only the difference goes out, as a spontaneous (nonce-less) request."""
        out = []
        for type_url, names in self.resources.wanted().items():
            state = self.types[type_url]
            if names == state.names:
                continue
            added, dropped = sorted(names - state.names), sorted(state.names - names)
            state.names = names
            self.resources.prune(type_url, names)
            if not state.subscribed:
                # The first request for a type on a stream must not be empty (that would be a
                # legacy wildcard subscription), so it only ever subscribes.
                if not added:
                    continue
                dropped = []
                state.subscribed = True
            out.append(self._request(type_url, subscribe=added, unsubscribe=dropped))
        return out

    def status(self) -> dict[str, Any]:
        return client_resources.status(self.types)
