"""The proxy's ADS client state, sans I/O (state of the world): responses in, requests out.

It follows the client half of Envoy's xDS protocol:
- CDS and LDS are wildcard subscriptions; EDS and RDS subscribe by name, the names being those the
  accepted clusters and listeners refer to;
- every response is answered with its nonce: an ACK carries the response's version, a NACK
  carries the last good version and `error_detail` naming each bad resource and field;
- a response is accepted or rejected as a whole, after compiling every resource with the same
  compilers and allowlist as a static bootstrap (`ClientResources`, shared with delta);
- a SotW CDS/LDS response is the full set: what it omits is removed;
- clusters warm until their endpoints arrive and listeners until their routes arrive, and both
  until the secrets (SDS over ADS, asked for by name) their TLS contexts name arrive; a warming
  update to something already serving leaves the old version serving meanwhile. A secret that is
  not usable, or that a waiting cluster or listener cannot be compiled with, is NACKed.
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


class ClientState:
    protocol = "sotw"

    def __init__(self, node: base_pb2.Node, lds: bool = True, cds: bool = True) -> None:
        self.node = node
        self.lds = lds
        self.cds = cds
        self.types = {t: TypeState() for t in types.ORDER}
        self.resources = ClientResources()

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
            request.error_detail.code = INVALID_ARGUMENT
            request.error_detail.message = f"remora does not subscribe to {type_url}"
            request.node.CopyFrom(self.node)
            return False, [request]
        state.nonce = response.nonce
        errors = ErrorCollector()
        version = response.version_info
        checked = self.resources.check(
            type_url, (("", version, item) for item in response.resources), errors
        )
        compiled = self.resources.compile(type_url, checked, errors) if not errors.errors else {}
        woken: dict[str, dict[str, Any]] = {}
        if not errors.errors:
            replace = type_url in types.FULL_STATE
            self.resources.check_set(type_url, compiled, checked, errors, replace)
            if type_url == types.SECRET:
                woken = self.resources.wake({**self.resources.secrets, **compiled})
        if errors.errors:
            return False, [self._nack(response, "; ".join(str(e) for e in errors.errors))]
        self.resources.install(type_url, compiled, checked, replace=type_url in types.FULL_STATE)
        self.resources.install_woken(woken)
        state.version = version
        requests = [self._request(type_url, response.nonce)]
        requests.extend(self._resubscribe())
        return True, requests

    def _nack(
        self, response: discovery_pb2.DiscoveryResponse, reason: str
    ) -> discovery_pb2.DiscoveryRequest:
        state = self.types[response.type_url]
        state.nonce = response.nonce  # also after `reject` restored the state before it
        state.last_nack = NackInfo(response.version_info, response.nonce, reason, time.time())
        nack = self._request(response.type_url, response.nonce)
        nack.error_detail.code = INVALID_ARGUMENT
        nack.error_detail.message = reason
        return nack

    def save(self) -> SavedState:
        return save_state(self.types, self.resources)

    def reject(
        self, saved: SavedState, response: discovery_pb2.DiscoveryResponse, reason: str
    ) -> list[discovery_pb2.DiscoveryRequest]:
        """Undo an accepted response that could not be applied, and NACK it instead."""
        self.types = dict(saved.types)
        self.resources.restore(saved.resources)
        return [self._nack(response, reason)]

    def _resubscribe(self) -> list[discovery_pb2.DiscoveryRequest]:
        """A SotW request restates the full name list whenever it changes."""
        out = []
        for type_url, names in self.resources.wanted().items():
            state = self.types[type_url]
            if names == state.names:
                continue
            state.names = names
            self.resources.prune(type_url, names)
            if names or state.subscribed:
                state.subscribed = True
                out.append(self._request(type_url, state.nonce))
        return out

    def status(self) -> dict[str, Any]:
        return client_resources.status(self.types)
