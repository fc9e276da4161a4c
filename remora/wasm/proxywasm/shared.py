"""Shared data and shared queues: the state Proxy-Wasm lets VMs share across streams and VMs.

Process-wide, as in Envoy (where it is shared across worker threads): a key set by one filter's
VM is read by another's under the same `vm_id`. Sans-IO: a queue's readiness is reported to a
callback that the owner of the queue's VM schedules; nothing here calls into a guest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from remora.wasm.proxywasm.abi import Status

# Bounds on what guests may pile up in the host: past these, a set or enqueue is refused
# (INTERNAL_FAILURE) instead of growing the proxy's memory without limit.
MAX_SHARED_BYTES = 64 << 20
MAX_QUEUE_ITEMS = 10_000


@dataclass
class _Entry:
    value: bytes
    cas: int


@dataclass
class SharedQueue:
    id: int
    vm_id: str
    name: str
    items: deque[bytes] = field(default_factory=deque)
    # Called (once per enqueue) so the VM that registered the queue can run on_queue_ready.
    on_ready: Callable[[int], None] | None = None


class SharedState:
    def __init__(self) -> None:
        self._data: dict[tuple[str, bytes], _Entry] = {}
        self._bytes = 0
        self._cas = 0
        self._queues: dict[int, SharedQueue] = {}
        self._queue_ids: dict[tuple[str, str], int] = {}

    # -- key/value ------------------------------------------------------------------------
    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        entry = self._data.get((vm_id, key))
        return None if entry is None else (entry.value, entry.cas)

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int) -> int:
        entry = self._data.get((vm_id, key))
        if cas and (entry is None or entry.cas != cas):
            return Status.CAS_MISMATCH
        grown = len(value) - (0 if entry is None else len(entry.value))
        if entry is None:
            grown += len(key)
        if self._bytes + grown > MAX_SHARED_BYTES:
            return Status.INTERNAL_FAILURE
        self._bytes += grown
        self._cas = (self._cas + 1) & 0xFFFFFFFF or 1
        self._data[(vm_id, key)] = _Entry(value, self._cas)
        return Status.OK

    # -- queues ---------------------------------------------------------------------------
    def register_queue(self, vm_id: str, name: str, on_ready: Callable[[int], None]) -> int:
        queue_id = self._queue_ids.get((vm_id, name))
        if queue_id is None:
            queue_id = len(self._queues) + 1
            self._queue_ids[(vm_id, name)] = queue_id
            self._queues[queue_id] = SharedQueue(queue_id, vm_id, name)
        self._queues[queue_id].on_ready = on_ready
        return queue_id

    def resolve_queue(self, vm_id: str, name: str) -> int | None:
        return self._queue_ids.get((vm_id, name))

    def enqueue(self, queue_id: int, value: bytes) -> int:
        queue = self._queues.get(queue_id)
        if queue is None:
            return Status.NOT_FOUND
        if len(queue.items) >= MAX_QUEUE_ITEMS:
            return Status.INTERNAL_FAILURE
        queue.items.append(value)
        if queue.on_ready is not None:
            queue.on_ready(queue_id)
        return Status.OK

    def dequeue(self, queue_id: int) -> tuple[int, bytes]:
        queue = self._queues.get(queue_id)
        if queue is None:
            return Status.NOT_FOUND, b""
        if not queue.items:
            return Status.EMPTY, b""
        return Status.OK, queue.items.popleft()


# The one store a process has; tests make their own.
PROCESS_SHARED = SharedState()
