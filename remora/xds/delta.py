"""Incremental (delta) stream state, sans I/O.

The client tells us what it has (`initial_resource_versions` on a new stream) and what it wants
(`resource_names_subscribe` / `_unsubscribe`); we send only resources whose version differs from
what it has, and name in `removed_resources` those it has that no longer exist. Subscription
changes apply even on a stale nonce (they are not answers to a response); ACK and NACK apply only
to the latest nonce. A NACKed resource version is not sent again on this stream until it
changes; other streams are not affected. Requests for types remora does not serve are ignored.

A client rejects a response as a whole, so a NACK of a response carrying one resource condemns
that resource version; a NACK of several condemns only that combination (a good resource that
travelled with a bad one must still reach the client once the bad one is fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from remora.xds import types, wire
from remora.xds.nacks import NackLog, Rejections
from remora.xds.snapshot import Snapshot
from remora.xds.version import set_version


@dataclass(frozen=True, slots=True)
class DeltaResponse:
    type_url: str
    system_version: str
    nonce: str
    names: tuple[str, ...]
    removed: tuple[str, ...]
    data: bytes  # an encoded DeltaDiscoveryResponse


@dataclass(slots=True)
class _TypeState:
    wildcard: bool = False
    subscribed: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # what the client has: name -> version
    nonce: str = ""
    # per nonce in flight: (name, version sent, version the client had before or None)
    in_flight: dict[str, list[tuple[str, str | None, str | None]]] = field(default_factory=dict)


def _key(name: str, version: str) -> str:
    return f"{name}@{version}"


def _set_key(changes: Sequence[tuple[str, str | None]]) -> str:
    """The identity of a multi-resource push: its (name, version or removal) pairs."""
    digest = set_version((name, version or "-") for name, version in changes)
    return f"{len(changes)} changes@{digest}"


# Names one stream may subscribe to per type: far beyond any mesh (each is a cluster or a
# listener), and what keeps a client from growing the server's memory without end.
MAX_SUBSCRIPTIONS = 100_000


class StreamLimitError(Exception):
    """The client went past a per-stream bound; the server ends the stream (RESOURCE_EXHAUSTED)."""


class DeltaStream:
    def __init__(self, node_id: str, group: str, nacks: NackLog, fixed_type: str = "") -> None:
        self.node_id = node_id
        self.group = group
        self.nacks = nacks
        self.fixed_type = fixed_type
        self._types: dict[str, _TypeState] = {}
        self._nonce = 0
        self.rejected = Rejections()

    def known(self, type_url: str) -> dict[str, str]:
        state = self._types.get(type_url)
        return dict(state.known) if state else {}

    def on_request(
        self, request: discovery_pb2.DeltaDiscoveryRequest, snapshot: Snapshot | None
    ) -> list[DeltaResponse]:
        type_url = request.type_url or self.fixed_type
        if type_url not in types.MESSAGES:
            return []
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = _TypeState()
            state.known.update(request.initial_resource_versions)
            state.wildcard = not request.resource_names_subscribe
        if request.response_nonce:
            sent = state.in_flight.pop(request.response_nonce, None)
            if sent is not None and request.HasField("error_detail"):
                self._nack(type_url, state, sent, request.error_detail.message)
            if request.response_nonce == state.nonce:
                state.in_flight.clear()
        for name in request.resource_names_subscribe:
            if name == "*":
                state.wildcard = True
            else:
                state.subscribed.add(name)
        for name in request.resource_names_unsubscribe:
            if name == "*":
                state.wildcard = False
            else:
                state.subscribed.discard(name)
                if not state.wildcard:
                    state.known.pop(name, None)
        if len(state.subscribed) > MAX_SUBSCRIPTIONS or len(state.known) > MAX_SUBSCRIPTIONS:
            raise StreamLimitError(
                f"more than {MAX_SUBSCRIPTIONS} resource names subscribed or known for {type_url}"
            )
        return self._respond(type_url, state, snapshot)

    def on_snapshot(self, snapshot: Snapshot | None) -> list[DeltaResponse]:
        out: list[DeltaResponse] = []
        for type_url, state in sorted(self._types.items(), key=_push_order):
            out.extend(self._respond(type_url, state, snapshot))
        return out

    def _nack(
        self,
        type_url: str,
        state: _TypeState,
        sent: list[tuple[str, str | None, str | None]],
        reason: str,
    ) -> None:
        for name, _version, before in sent:
            # The client kept what it had.
            if before is None:
                state.known.pop(name, None)
            else:
                state.known[name] = before
        # Remember the rejection so it is not re-sent.
        name, version, before = sent[0]
        if len(sent) == 1 and version is not None:
            rejected, last_good = _key(name, version), before or ""
        else:
            rejected, last_good = _set_key([(n, v) for n, v, _b in sent]), ""
        self.rejected.add(type_url, rejected)
        self.nacks.record(self.node_id, self.group, type_url, rejected, last_good, reason)

    def _respond(
        self, type_url: str, state: _TypeState, snapshot: Snapshot | None
    ) -> list[DeltaResponse]:
        if snapshot is None:
            return []
        available = snapshot.resources(type_url)
        wanted = set(available) if state.wildcard else set()
        wanted |= state.subscribed
        updates = []
        for name in sorted(wanted):
            resource = available.get(name)
            if resource is None or state.known.get(name) == resource.version:
                continue
            if (type_url, _key(name, resource.version)) in self.rejected:
                continue
            updates.append(resource)
        removed = sorted(
            name
            for name in state.known
            if name not in available and (state.wildcard or name in state.subscribed)
        )
        if not updates and not removed:
            return []
        changes = [(r.name, r.version) for r in updates] + [(n, None) for n in removed]
        if (type_url, _set_key(changes)) in self.rejected:
            return []
        self._nonce += 1
        nonce = str(self._nonce)
        state.nonce = nonce
        record: list[tuple[str, str | None, str | None]] = []
        for resource in updates:
            record.append((resource.name, resource.version, state.known.get(resource.name)))
            state.known[resource.name] = resource.version
        for name in removed:
            record.append((name, None, state.known.pop(name)))
        state.in_flight[nonce] = record
        system_version = snapshot.version(type_url)
        data = wire.delta_response(
            system_version, type_url, (r.delta_field for r in updates), removed, nonce
        )
        return [
            DeltaResponse(
                type_url,
                system_version,
                nonce,
                tuple(r.name for r in updates),
                tuple(removed),
                data,
            )
        ]


def _push_order(item: tuple[str, object]) -> int:
    """Clusters before endpoints before listeners before routes, as Envoy applies them."""
    order = types.ORDER
    return order.index(item[0]) if item[0] in order else len(order)
