"""Reading and writing a guest's linear memory from host calls, bounds-checked.

Every pointer a guest passes is checked against the memory's current size before it is used;
an out-of-bounds pointer raises `OutOfBounds`, which the host call turns into the ABI's
INVALID_MEMORY_ACCESS (never a host crash). The base address is read on every access because
`memory.grow` may move the memory.

Data the host hands back (a header value, a body) is written into memory the guest allocates
itself, through `proxy_on_memory_allocate` (or the older `malloc`), and returned as a pointer
and size written to two u32 slots the guest named, as the ABI's `return_*` parameters are.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable

import wasmtime

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class OutOfBounds(Exception):
    pass


class AllocationFailed(Exception):
    pass


class GuestMemory:
    __slots__ = ("_allocate", "_memory", "_store")

    def __init__(
        self,
        store: wasmtime.Store,
        memory: wasmtime.Memory,
        allocate: Callable[[int], int] | None,
    ) -> None:
        self._store = store
        self._memory = memory
        self._allocate = allocate

    def _base(self, ptr: int, size: int) -> int:
        if ptr < 0 or size < 0 or ptr + size > self._memory.data_len(self._store):
            raise OutOfBounds(f"{size} bytes at {ptr:#x}")
        base = ctypes.cast(self._memory.data_ptr(self._store), ctypes.c_void_p).value
        assert base is not None
        return base + ptr

    def read(self, ptr: int, size: int) -> bytes:
        if size == 0:
            return b""
        return ctypes.string_at(self._base(ptr, size), size)

    def write(self, ptr: int, data: bytes) -> None:
        if data:
            ctypes.memmove(self._base(ptr, len(data)), data, len(data))

    def write_u32(self, ptr: int, value: int) -> None:
        ctypes.memmove(self._base(ptr, 4), _U32.pack(value & 0xFFFFFFFF), 4)

    def write_u64(self, ptr: int, value: int) -> None:
        ctypes.memmove(self._base(ptr, 8), _U64.pack(value & 0xFFFFFFFFFFFFFFFF), 8)

    def read_u32(self, ptr: int) -> int:
        value: int = _U32.unpack(ctypes.string_at(self._base(ptr, 4), 4))[0]
        return value

    def check(self, ptr: int, size: int) -> None:
        self._base(ptr, size)

    def give(self, data: bytes, ptr_out: int, size_out: int) -> None:
        """Copy `data` into a fresh guest allocation; its address and size go to the slots.

        The output slots are checked before anything is allocated, so a bad slot costs the
        guest no leaked allocation. Zero bytes need no allocation: the pointer is 0.
        """
        self.check(ptr_out, 4)
        self.check(size_out, 4)
        if not data:
            self.write_u32(ptr_out, 0)
            self.write_u32(size_out, 0)
            return
        if self._allocate is None:
            raise AllocationFailed("the module exports neither proxy_on_memory_allocate nor malloc")
        address = self._allocate(len(data)) & 0xFFFFFFFF  # an i32 result arrives signed
        if not address:
            raise AllocationFailed(f"the guest's allocator returned 0 for {len(data)} bytes")
        self.write(address, data)
        self.write_u32(ptr_out, address)
        self.write_u32(size_out, len(data))
