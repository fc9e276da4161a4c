"""What the ring-buffer and perf readers share: shared mappings, record decoding, waiting.

Records are decoded by copy (`from_buffer_copy`), not by view: the kernel maps the data pages
read-only, which ctypes' zero-copy `from_buffer` refuses, and a copied struct stays valid after
the ring moves on, which is what a caller keeping decoded events expects. A record shorter than
the ctypes type is an error, because reading past its end would take bytes of the next record.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import mmap
import platform
import select
import time
from collections.abc import Callable, Sequence
from typing import Any

from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFError, BPFTypeMismatchError

# Kinds a record type can name, most likely first: a name may also be a function or variable.
_TYPE_KINDS = (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF, Kind.INT, Kind.ENUM, Kind.ENUM64)


class ShortRecordError(BPFError):
    """A record has fewer bytes than the ctypes type it is decoded into."""


def require_tso(what: str) -> None:
    """The readers' loads and stores of ring positions are plain memory accesses. The kernel's
    protocol needs the producer position read with acquire and the consumer position written
    with release semantics, which x86-64's total store order gives every load and store (and
    the interpreter's opaque C calls keep the compiler from reordering them). Pure Python
    cannot issue a fence, so weakly ordered machines are refused rather than misread."""
    machine = platform.machine()
    if machine not in ("x86_64", "AMD64", "i686", "i386"):
        raise BPFError(f"{what}: needs x86's total store order; {machine} is weakly ordered")


def map_shared(fd: int, length: int, offset: int, writable: bool) -> mmap.mmap:
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        return mmap.mmap(fd, length, mmap.MAP_SHARED, prot, offset=offset)
    except OSError as e:
        raise BPFError(f"mmap of {length} bytes at offset {offset} failed: {e}") from None


def unmap(m: mmap.mmap, views: Sequence[memoryview]) -> None:
    """Release our views, then the mapping. If a caller still holds a record (a slice of a
    view), the mapping cannot be unmapped yet; it is then unmapped when the last record is
    dropped, which is safe, unlike unmapping memory that a live memoryview points into."""
    for v in views:
        v.release()
    with contextlib.suppress(BufferError):
        m.close()


def btf_type_id(btf: Spec, name: str | int) -> int:
    if isinstance(name, int):
        btf.type(name)
        return name
    bare = name.removeprefix("struct ").removeprefix("union ").strip()
    for kind in _TYPE_KINDS:
        found = btf.by_name(bare, kind)
        if found is not None:
            return found.id
    raise BPFTypeMismatchError(f"BTF has no type named {name!r}")


class Decoder:
    """Turns a record into an instance of a ctypes type, checked against BTF when given."""

    def __init__(
        self, ctype: Any, btf: Spec | None = None, btf_type: str | int | None = None, what: str = ""
    ) -> None:
        if btf_type is not None:
            if btf is None:
                raise BPFError(f"{what}: btf_type {btf_type!r} needs the object's BTF (btf=)")
            from remora.bpf.btf.check import check_ctype

            check_ctype(ctype, (btf, btf_type_id(btf, btf_type)), what)
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)
        self.what = what
        self.copy: Callable[..., Any] = ctype.from_buffer_copy  # (buffer, offset)

    def check(self, length: int) -> None:
        if length < self.size:
            raise ShortRecordError(
                f"{self.what}: a record of {length} bytes is shorter than "
                f"{self.ctype.__name__} ({self.size} bytes)"
            )

    def __call__(self, record: memoryview) -> Any:
        self.check(len(record))
        return self.copy(record)


def wait_fds(fds: Sequence[int], events: int, timeout: float | None) -> bool:
    """Block until one of `fds` is ready or `timeout` seconds pass; True if one is ready.

    A `select.poll` object holds no fd of its own, so nothing here can leak."""
    p = select.poll()
    for fd in fds:
        p.register(fd, events)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000 + 0.5))
        if p.poll(ms):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


async def wait_readable(fds: Sequence[int]) -> None:
    """Wait in the running event loop until one of `fds` is readable."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    for fd in fds:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        for fd in fds:
            loop.remove_reader(fd)
