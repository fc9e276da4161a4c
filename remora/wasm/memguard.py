"""Host-owned linear memories, so that a refused `memory.grow` is observable by the host.

wasmtime enforces `Store.set_limits(memory_size=...)` inside its store limiter: a `memory.grow`
past the cap returns -1 to the guest and nothing at all reaches the host. The Rust API can turn
that into a trap (`StoreLimitsBuilder::trap_on_grow_failure`) but the C API that wasmtime-py wraps
(`wasmtime_store_limiter`) has no such switch. What the C API does have is a host memory creator
(`wasmtime_config_host_memory_creator_set`): the engine asks the host to allocate every linear
memory and to grow it. remora uses that hook on engines that enforce a memory cap, and enforces the
cap itself, so each refusal is counted on the guest's `MemoryAccount`. The guest still sees -1 (the
Wasm semantics the sandbox promises); the host can now tell that the limit was hit, and
`limits.translate` attributes a later trap to the memory limit exactly instead of guessing.

Memory layout: one anonymous `PROT_NONE` reservation per memory, large enough for the reservation
plus guard region wasmtime asks for (4 GiB + 32 MiB for wasm32 on x86-64), of which the accessible
prefix is `mprotect`ed read-write as the memory grows. The base never moves. wasmtime's
copy-on-write memory initialisation only works with its own allocator, so it is turned off on
these engines (wasmtime 50 panics otherwise) and data segments are copied at instantiation.

Accounting is per guest. The creator callback is not told which store it allocates for, so
`Guest` names its account in a thread-local while it defines imports and instantiates. A memory
created on such an engine outside that window has no account and therefore no cap.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

_PROT_NONE, _PROT_RW = 0, mmap.PROT_READ | mmap.PROT_WRITE
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
_MAP_FAILED = ctypes.c_void_p(-1).value
_WASM32_SPAN = 1 << 32
_OS_PAGE = mmap.PAGESIZE

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
]  # fmt: skip
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

# Memory-limit refusals carry this text so `limits.translate` can recognise them at instantiation.
REFUSAL_MARKER = "exceeds the max_memory limit"


@dataclass
class MemoryAccount:
    """One guest's memory cap and what happened at it."""

    cap: int | None
    refusals: int = 0
    last_refused: int | None = None  # the byte size the last refused grow asked for

    @property
    def hit(self) -> bool:
        return self.refusals > 0


@dataclass
class _Region:
    base: int
    span: int  # the whole mapping: reservation plus guard
    reserve: int  # how far the accessible prefix may grow without moving
    size: int
    maximum: int
    account: MemoryAccount | None


_REGIONS: dict[int, _Region] = {}
_KEYS = itertools.count(1)
_CURRENT = threading.local()


@contextmanager
def accounting(account: MemoryAccount) -> Iterator[None]:
    """Charge memories created on this thread inside the block to `account`."""
    previous = getattr(_CURRENT, "account", None)
    _CURRENT.account = account
    try:
        yield
    finally:
        _CURRENT.account = previous


def _error(message: str) -> int:
    err = ffi.wasmtime_error_new(message.encode())
    return int(ctypes.cast(err, ctypes.c_void_p).value or 0)


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def _get_memory(env: int | None, size_out: Any, max_out: Any) -> int:
    region = _REGIONS[env or 0]
    size_out[0] = region.size
    max_out[0] = region.maximum
    return region.base


def _grow_memory(env: int | None, new_size: int) -> int:
    region = _REGIONS[env or 0]
    account = region.account
    if account is not None and account.cap is not None and new_size > account.cap:
        account.refusals += 1
        account.last_refused = new_size
        return _error(f"memory size of {new_size} bytes {REFUSAL_MARKER} ({account.cap})")
    if new_size > region.reserve:
        return _error(f"memory size of {new_size} bytes exceeds the host reservation")
    if new_size > region.size and _mprotect(region.base, _round_up(new_size, _OS_PAGE), _PROT_RW):
        return _error(
            f"cannot commit {new_size} bytes of linear memory: errno {ctypes.get_errno()}"
        )
    region.size = max(region.size, new_size)
    return 0


def _finalize(env: int | None) -> None:
    region = _REGIONS.pop(env or 0, None)
    if region is not None:
        _munmap(region.base, region.span)


def _new_memory(
    _env: int | None,
    _ty: Any,
    minimum: int,
    maximum: int,
    reserved: int,
    guard: int,
    out: Any,
) -> int:
    account: MemoryAccount | None = getattr(_CURRENT, "account", None)
    if account is not None and account.cap is not None and minimum > account.cap:
        account.refusals += 1
        account.last_refused = minimum
        return _error(f"memory minimum size of {minimum} bytes {REFUSAL_MARKER} ({account.cap})")
    # Never move: reserve what wasmtime asked for (or the whole wasm32 space) plus the guard.
    span = _round_up(max(reserved, minimum, min(maximum, _WASM32_SPAN)), _OS_PAGE)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
    base = _mmap(None, span + guard, _PROT_NONE, flags, -1, 0)
    if base is None or base == _MAP_FAILED:
        return _error(f"cannot reserve {span + guard} bytes for a linear memory")
    if minimum and _mprotect(base, _round_up(minimum, _OS_PAGE), _PROT_RW):
        _munmap(base, span + guard)
        return _error(f"cannot commit {minimum} bytes of linear memory")
    key = next(_KEYS)
    # The guard stays PROT_NONE and belongs to the mapping, so munmap covers it too.
    _REGIONS[key] = _Region(base, span + guard, span, minimum, maximum, account)
    memory = out[0]
    memory.env = key
    memory.get_memory = _GET
    memory.grow_memory = _GROW
    memory.finalizer = _FINALIZE
    return 0


def _guarded(fn: Callable[..., int]) -> Callable[..., int]:
    """A Python exception must not unwind into wasmtime: fail the allocation or grow instead."""

    def call(*args: Any) -> int:
        try:
            return fn(*args)
        except BaseException as exc:  # reported to wasmtime as the error, never unwound
            return _error(f"remora memguard: {type(exc).__name__}: {exc}")

    return call


_GET = ffi.wasmtime_memory_get_callback_t(_get_memory)
_GROW = ffi.wasmtime_memory_grow_callback_t(_guarded(_grow_memory))
_FINALIZE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_finalize)
_NEW = ffi.wasmtime_new_memory_callback_t(_guarded(_new_memory))
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()
_CREATOR = ffi.wasmtime_memory_creator_t(None, _NEW, _NO_FINALIZER)


def install(config: wasmtime.Config) -> None:
    """Make every linear memory of engines built from `config` host-owned and accountable."""
    ffi.wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(_CREATOR))
    ffi.wasmtime_config_memory_init_cow_set(config.ptr(), False)


def live_regions() -> int:
    """How many host-owned memories exist (tests use it to prove stores release them)."""
    return len(_REGIONS)
