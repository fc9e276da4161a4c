"""State-of-the-world stream state, sans I/O: requests and snapshots in, encoded responses out.

The rules it follows (Envoy's "xDS REST and gRPC protocol"):
- nonces are per stream; a request whose `response_nonce` is not the latest one sent for its type
  is stale and ignored, since the client has not seen our newest response yet;
- a request with `error_detail` set is a NACK of the response its nonce names, whatever its
  `version_info` (which carries the client's last good version);
- the first request with no names (or a `*` name) subscribes to every resource of the type;
- LDS and CDS responses carry the full set; RDS and EDS carry the named resources that exist,
  and are sent as soon as any exist (no waiting for other types);
- a type's version is not re-sent while it is the latest sent, and never to a stream that NACKed
  it (other clients, of its group or not, are not affected);
- a request for a type remora does not serve is ignored, so a client cannot grow the state.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2

from remora.xds import types, wire
from remora.xds.nacks import NackLog, Rejections
from remora.xds.snapshot import Snapshot
from remora.xds.version import set_version


@dataclass(frozen=True, slots=True)
class Response:
    type_url: str
    version: str
    nonce: str
    names: tuple[str, ...]
    data: bytes  # an encoded DiscoveryResponse


@dataclass(slots=True)
class _TypeState:
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    nonce: str = ""  # latest nonce sent for this type
    sent_version: str | None = None
    acked_version: str = ""


class SotwStream:
    def __init__(self, node_id: str, group: str, nacks: NackLog, fixed_type: str = "") -> None:
        self.node_id = node_id
        self.group = group
        self.nacks = nacks
        self.fixed_type = fixed_type  # per-type services may omit type_url in requests
        self._types: dict[str, _TypeState] = {}
        self._nonce = 0
        self.rejected = Rejections()

    def acked(self, type_url: str) -> str:
        state = self._types.get(type_url)
        return state.acked_version if state else ""

    def on_request(
        self, request: discovery_pb2.DiscoveryRequest, snapshot: Snapshot | None
    ) -> list[Response]:
        type_url = request.type_url or self.fixed_type
        if type_url not in types.MESSAGES:
            return []
        state = self._types.get(type_url)
        first = state is None
        if state is None:
            state = self._types[type_url] = _TypeState()
        elif request.response_nonce != state.nonce:
            return []  # stale: answers a response that has since been superseded
        if request.response_nonce and state.sent_version is not None:
            if request.HasField("error_detail"):
                self.rejected.add(type_url, state.sent_version)
                self.nacks.record(
                    self.node_id,
                    self.group,
                    type_url,
                    state.sent_version,
                    request.version_info,
                    request.error_detail.message or f"code {request.error_detail.code}",
                )
            else:
                state.acked_version = request.version_info
        names = frozenset(request.resource_names)
        wildcard = "*" in names or (not names and (first or state.wildcard))
        state.wildcard = wildcard
        state.names = names - {"*"}
        return self._respond(type_url, state, snapshot, first)

    def on_snapshot(self, snapshot: Snapshot | None) -> list[Response]:
        out: list[Response] = []
        for type_url, state in sorted(self._types.items(), key=_push_order):
            out.extend(self._respond(type_url, state, snapshot, False))
        return out

    def _respond(
        self, type_url: str, state: _TypeState, snapshot: Snapshot | None, first: bool
    ) -> list[Response]:
        if snapshot is None:
            return []
        if state.wildcard:
            resources = sorted(
                snapshot.resources(type_url).values(), key=lambda resource: resource.name
            )
            # Explicit names next to `*` are subscribed too; the full set already has them.
            version = snapshot.version(type_url)
        else:
            resources = snapshot.select(type_url, state.names)
            if not resources:
                return []  # absence is not deletion for RDS/EDS: nothing to say yet
            version = set_version((r.name, r.version) for r in resources)
        if version == state.sent_version and not first:
            return []
        if (type_url, version) in self.rejected:
            return []
        self._nonce += 1
        nonce = str(self._nonce)
        state.nonce = nonce
        state.sent_version = version
        data = wire.sotw_response(version, type_url, (r.sotw_field for r in resources), nonce)
        return [Response(type_url, version, nonce, tuple(r.name for r in resources), data)]


def _push_order(item: tuple[str, object]) -> int:
    """Clusters before endpoints before listeners before routes, as Envoy applies them."""
    order = types.ORDER
    return order.index(item[0]) if item[0] in order else len(order)
