"""The host's side of Proxy-Wasm contexts: what a callback may read and change, as plain data.

A context is sans-IO. Before calling into the guest, the proxy puts the stream's header maps and
body bytes here; the guest reads and edits them through host calls; afterwards the proxy reads
them back, with the actions the guest asked for (continue, close, a local reply). So the host
calls never touch a socket, and nothing re-enters the guest from inside one of its own calls
(a local reply that finished the stream would otherwise run `proxy_on_log` mid-callback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from remora.wasm.proxywasm.abi import Pairs

# Property lookup: NUL-split path segments -> the serialized value, or None when missing.
PropertyLookup = Callable[[tuple[bytes, ...]], bytes | None]


@dataclass
class LocalReply:
    status: int
    details: str
    body: bytes
    headers: Pairs
    grpc_status: int | None  # None: not a gRPC reply (the guest passed -1 / u32 max)


@dataclass
class Context:
    """Root and stream contexts share this shape; `root_id` names the plugin's root_id."""

    id: int
    root_id: str
    parent: RootContext | None = None
    maps: dict[int, Pairs] = field(default_factory=dict)
    buffers: dict[int, bytearray] = field(default_factory=dict)
    # What the guest asked for during its last callbacks, in order; the owner drains it.
    continued: list[int] = field(default_factory=list)  # stream types continued
    closed: list[int] = field(default_factory=list)  # stream types closed or reset
    local_reply: LocalReply | None = None
    # Which maps the guest changed since the owner last looked (request headers changed means
    # the route must be recomputed, as Envoy clears its route cache).
    changed_maps: set[int] = field(default_factory=set)
    properties: PropertyLookup | None = None
    # set_property values; Envoy keeps them as filter state readable through get_property.
    filter_state: dict[bytes, bytes] = field(default_factory=dict)
    # Whether the guest answered proxy_on_done with false and owes a proxy_done.
    pending_done: bool = False
    deleted: bool = False
    # Run (soon, never inside a guest call) when the guest acted on this context from outside
    # the owner's own call into it: a tick or an http_call answer continued or answered it.
    on_actions: Callable[[], None] | None = None

    @property
    def root(self) -> RootContext:
        if self.parent is not None:
            return self.parent
        assert isinstance(self, RootContext)
        return self

    def take_actions(self) -> tuple[list[int], list[int], LocalReply | None]:
        continued, closed, reply = self.continued, self.closed, self.local_reply
        self.continued, self.closed, self.local_reply = [], [], None
        return continued, closed, reply


@dataclass
class RootContext(Context):
    """One per (VM, root_id): plugin configuration, its timer, and its outgoing calls."""

    configuration: bytes = b""
    tick_period_ms: int = 0
    # http_call ids this root made that have not been answered yet.
    pending_calls: set[int] = field(default_factory=set)


@dataclass
class StreamContext(Context):
    """One per HTTP stream (or TCP connection) going through the filter."""

    # Per-stream callback results the owner needs (how many headers, end of stream...) are
    # passed as call arguments; this only holds what outlives one callback.
    response_started: bool = False
