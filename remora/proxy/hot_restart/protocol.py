"""The hot restart conversation between two epochs, as bytes in and messages out (no I/O).

Both ends speak over one Unix stream socket. A frame is a 4-byte big-endian length and a JSON
object whose `type` names the message. A stream rather than SOCK_SEQPACKET because the stats
snapshot of a large config outgrows a single datagram; JSON because both ends are remora, the
messages are few per restart, and an operator can read them in `strace`. The one file descriptor
a `SocketReply` carries travels as SCM_RIGHTS data on that frame's bytes; the kernel hands it to
the reader with the first byte of the frame, so the reader queues descriptors in arrival order
and each reply that says `found` takes the next one.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

# Bumped when a message changes meaning: a child refuses a parent that speaks another version,
# since half-understood stats or sockets are worse than a clear "stop the old one first".
VERSION = 1
MAX_FRAME = 64 * 1024 * 1024  # a stats snapshot of ~1M counters; anything larger is corruption
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer broke the framing or message rules; the conversation cannot go on."""


def socket_name(base_id: int, epoch: int) -> str:
    """The abstract-namespace name the process at `epoch` listens on for its successor.

    Abstract names need no directory to exist or be writable and vanish with the process, so a
    crashed epoch never leaves a stale file that blocks the next start. They are shared by the
    whole network namespace, which is what `--base-id` separates, as in Envoy."""
    return f"\0remora_hot_restart_{base_id}_{epoch}"


def display_name(name: str) -> str:
    """`@remora_hot_restart_0_1`: how ss(8) and the logs show an abstract name."""
    return "@" + name[1:] if name.startswith("\0") else name


@dataclass(frozen=True, slots=True)
class Hello:
    """First message each way: who speaks, and the version both must share."""

    type: ClassVar[str] = "hello"
    epoch: int
    pid: int
    version: int = VERSION
    # When epoch 0 started (wall clock): /server_info's uptime_all_epochs carries across.
    first_started_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SocketRequest:
    """The child asks for the listening socket bound at host:port (a listener or the admin)."""

    type: ClassVar[str] = "socket_request"
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class SocketReply:
    """`found`: the frame carries the descriptor; otherwise the child binds the address itself."""

    type: ClassVar[str] = "socket_reply"
    host: str
    port: int
    found: bool


@dataclass(frozen=True, slots=True)
class StatsRequest:
    type: ClassVar[str] = "stats_request"


@dataclass(frozen=True, slots=True)
class Stats:
    """The parent's counters, absolute. Sent on request, while the parent drains, and one last
    time (`final`) before it exits, so the requests it finishes while draining are counted."""

    type: ClassVar[str] = "stats"
    counters: dict[str, int] = field(default_factory=dict)
    final: bool = False


@dataclass(frozen=True, slots=True)
class DrainRequest:
    """The child is live on every socket it took: the parent stops accepting and drains."""

    type: ClassVar[str] = "drain_request"
    drain_time_s: float
    parent_shutdown_time_s: float


@dataclass(frozen=True, slots=True)
class Draining:
    """The parent no longer accepts on any socket (listeners and admin)."""

    type: ClassVar[str] = "draining"
    open_connections: int


Message = Hello | SocketRequest | SocketReply | StatsRequest | Stats | DrainRequest | Draining
_TYPES: dict[str, type[Message]] = {
    cls.type: cls
    for cls in (Hello, SocketRequest, SocketReply, StatsRequest, Stats, DrainRequest, Draining)
}


def encode(message: Message) -> bytes:
    body = json.dumps({"type": message.type, **asdict(message)}, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


def decode(body: bytes) -> Message:
    try:
        data: Any = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"a frame is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a frame must hold a JSON object")
    kind = data.pop("type", None)
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ProtocolError(f"{kind}: {exc}") from None


class Decoder:
    """Turns received bytes into messages; the only stateful byte handling of the protocol."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ProtocolError(f"a frame of {length} bytes exceeds {MAX_FRAME}")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            messages.append(decode(bytes(self._buffer[_LENGTH.size : end])))
            del self._buffer[:end]
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (non-zero at EOF means the peer died mid-message)."""
        return len(self._buffer)
