"""BPF ring buffers from user space: `RingBuffer` reads a RINGBUF map, `UserRingBuffer` writes a
USER_RINGBUF map. Both work on the map's mmap, as the kernel lays it out (include/uapi/linux/bpf.h
and kernel/bpf/ringbuf.c):

* page 0 holds the consumer position, page 1 the producer position, and the data pages follow,
  mapped twice in a row, so a record that wraps the ring end is contiguous in memory;
* every record starts with an 8-byte header: a u32 length whose top bits are BUSY (reserved, not
  yet committed) and DISCARD (committed, but to be skipped), then a u32 page offset;
* a record takes its length plus the header, rounded up to 8 bytes.

The reader owns the consumer position and the writer owns the producer position, so each keeps
its own copy and only reads the other side's from the mapping.
"""

from __future__ import annotations

import select
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from remora.bpf.btf.types import Spec
from remora.bpf.errors import BPFError
from remora.bpf.maps import Map
from remora.bpf.records import Decoder, map_shared, require_tso, unmap, wait_fds, wait_readable
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import Closing
from remora.bpf.sys.perf import page_size

# From include/uapi/linux/bpf.h (BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT,
# BPF_RINGBUF_HDR_SZ).
BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SZ = 8
_LEN_MASK = DISCARD_BIT - 1
CHUNK = 65536  # records per batch in consume()

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<II")


def _geometry(m: Map, want: t.MapType) -> int:
    if m.type != want:
        raise BPFError(f"map {m.name!r} is {m.type.name}, not {want.name}")
    size = m.max_entries
    if size <= 0 or size & (size - 1) or size % page_size():
        raise BPFError(f"map {m.name!r}: ring size {size} is not a power-of-two page multiple")
    return size


class RingBuffer(Closing):
    """Reads the records that BPF programs commit to a RINGBUF map.

    Records are zero-copy: each is a read-only memoryview slice of the mapping, valid only until
    the consumer position moves past it, after which the producer may overwrite it. A batch's
    position is published when the next batch is taken (`read`, `poll`, the next step of async
    iteration), by `release()`, or at the end of `consume`/`count`. Keep a record longer by
    copying it (`bytes(rec)`) or by giving a `ctype`, which decodes each record into a copy.

    Records of one batch are found with a single read of the producer position, and the consumer
    position is written once per batch; BUSY records end a batch (the producer has not committed
    them yet, and later ones cannot be passed) and DISCARD records are skipped.

    With `ctype`, every record is returned as an instance of it; with `btf` and `btf_type` (the
    object's `CollectionSpec.btf` and a type name such as "event"), the ctypes layout is first
    checked against BTF, as typed maps are. A record shorter than `ctype` raises
    `ShortRecordError`. Not thread-safe: one reader per ring.
    """

    def __init__(
        self,
        m: Map,
        ctype: Any = None,
        btf: Spec | None = None,
        btf_type: str | int | None = None,
    ) -> None:
        require_tso("ring buffer reader")
        self.map = m
        self.size = _geometry(m, t.MapType.RINGBUF)
        self._fd = m.fd.raw
        self.decode: Decoder | None = None
        if ctype is not None:
            self.decode = Decoder(ctype, btf, btf_type, f"ring buffer {m.name!r}")
        elif btf_type is not None:
            raise BPFError(f"ring buffer {m.name!r}: btf_type needs a ctype to check")
        ps = page_size()
        self._cons_map = map_shared(self._fd, ps, 0, writable=True)
        try:
            self._prod_map = map_shared(self._fd, ps + 2 * self.size, ps, writable=False)
        except BaseException:
            self._cons_map.close()
            raise
        self._cons_mv = memoryview(self._cons_map)
        prod_mv = memoryview(self._prod_map)
        self._prod_mv = prod_mv[:8]
        self._data = prod_mv[ps:]
        self._data32 = self._data.cast("I")  # record headers, read as u32 in bulk
        self._views = (self._cons_mv, self._prod_mv, self._data32, self._data, prod_mv)
        self._mask = self.size - 1
        self._cons: int = _U64.unpack_from(self._cons_mv, 0)[0]
        self._published = self._cons
        self.closed = False

    # positions -----------------------------------------------------------------------------
    def release(self) -> None:
        """Hand the space of the records returned so far back to the producer."""
        if self._cons != self._published:
            # A plain store is a release on x86-64: every read of the batch happened before it.
            _U64.pack_into(self._cons_mv, 0, self._cons)
            self._published = self._cons

    def positions(self) -> tuple[int, int]:
        """(consumer, producer) as the mapping holds them now: what the kernel sees."""
        return (
            int(_U64.unpack_from(self._cons_mv, 0)[0]),
            int(_U64.unpack_from(self._prod_mv, 0)[0]),
        )

    def available(self) -> int:
        """Bytes committed or reserved by producers and not yet consumed."""
        return int(_U64.unpack_from(self._prod_mv, 0)[0]) - self._cons

    # reading --------------------------------------------------------------------------------
    def read(self, limit: int = 0) -> list[Any]:
        """The records committed now (at most `limit` when > 0), without blocking. The previous
        batch is released first, so its records are no longer valid."""
        self.release()
        cons = self._cons
        prod = _U64.unpack_from(self._prod_mv, 0)[0]  # acquire: the records below it are ours
        if cons == prod:
            return []
        data, decode = self._data, self.decode
        run = self._uniform(cons, prod, limit)
        if run is not None:
            start, n, size, stride = run
            self._cons = cons + n * stride
            stop = start + n * stride
            if decode is None:
                return [data[o : o + size] for o in range(start + HDR_SZ, stop, stride)]
            decode.check(size)
            copy = decode.copy
            return [copy(data, o) for o in range(start + HDR_SZ, stop, stride)]
        mask, hdr = self._mask, _U32.unpack_from
        out: list[Any] = []
        append = out.append
        left = limit or -1
        while cons < prod:
            off = cons & mask
            (ln,) = hdr(data, off)
            if ln & BUSY_BIT:
                break
            size = ln & _LEN_MASK
            cons += (size + 15) & ~7  # header included, rounded to 8
            if ln & DISCARD_BIT:
                continue
            if decode is None:
                append(data[off + HDR_SZ : off + HDR_SZ + size])
            else:
                decode.check(size)
                append(decode.copy(data, off + HDR_SZ))
            left -= 1
            if not left:
                break
        self._cons = cons
        return out

    def _uniform(self, cons: int, prod: int, limit: int) -> tuple[int, int, int, int] | None:
        """(offset, count, size, stride) when everything up to `prod` (or the first `limit`
        records) is committed records of one size, which is the common case of a program
        sending one struct. Their headers are then compared in one C-level list scan instead
        of one Python step each; the double mapping makes the run contiguous even if it wraps.
        """
        start = cons & self._mask
        (ln,) = _U32.unpack_from(self._data, start)
        if ln & (BUSY_BIT | DISCARD_BIT):
            return None
        stride = (ln + 15) & ~7
        n, rest = divmod(prod - cons, stride)
        if rest or n < 2:
            return None
        if limit and n > limit:
            n = limit
        q = stride >> 2
        headers = self._data32[start >> 2 : (start >> 2) + n * q : q].tolist()
        if headers.count(ln) != n:
            return None
        return start, n, ln, stride

    def consume(self, callback: Callable[[Any], object], limit: int = 0) -> int:
        """Call `callback` on each committed record (at most `limit` when > 0); the records are
        valid only during the call. They are taken in batches of `CHUNK`, each released once
        after its last callback, which bounds the memory a large backlog costs. Returns how
        many records were passed."""
        total = 0
        while True:
            want = min(CHUNK, limit - total) if limit else CHUNK
            records = self.read(want)
            for r in records:
                callback(r)
            self.release()
            total += len(records)
            if len(records) < want or (limit and total >= limit):
                return total

    def count(self, limit: int = 0) -> int:
        """Consume the committed records without making an object for any of them: for callers
        that only need to know how many arrived (or want to drop a backlog)."""
        self.release()
        cons = self._cons
        prod = _U64.unpack_from(self._prod_mv, 0)[0]
        if cons == prod:
            return 0
        run = self._uniform(cons, prod, limit)
        if run is not None:
            self._cons = cons + run[1] * run[3]
            self.release()
            return run[1]
        data, mask, hdr = self._data, self._mask, _U32.unpack_from
        n = 0
        left = limit or -1
        while cons < prod:
            (ln,) = hdr(data, cons & mask)
            if ln & BUSY_BIT:
                break
            cons += ((ln & _LEN_MASK) + 15) & ~7
            if not ln & DISCARD_BIT:
                n += 1
                left -= 1
                if not left:
                    break
        self._cons = cons
        self.release()
        return n

    def poll(self, timeout: float | None = None, limit: int = 0) -> list[Any]:
        """Like `read`, but wait up to `timeout` seconds (None: forever) for a first record.
        Returns an empty list when nothing arrived in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            records = self.read(limit)
            # read() has released everything, so a producer that commits next sees the ring
            # caught up and wakes us (the kernel only wakes a consumer that is caught up).
            if records:
                return records
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not wait_fds([self._fd], select.POLLIN, left):
                return self.read(limit)
            if self.available() and not self._committed():
                time.sleep(0.0002)  # the first record is still BUSY: let the producer finish

    def _committed(self) -> bool:
        if self._cons == _U64.unpack_from(self._prod_mv, 0)[0]:
            return False
        return not _U32.unpack_from(self._data, self._cons & self._mask)[0] & BUSY_BIT

    async def aread(self, limit: int = 0) -> list[Any]:
        """Wait in the running event loop (through `loop.add_reader` on the map fd) for records."""
        while True:
            records = self.read(limit)
            if records:
                return records
            await wait_readable([self._fd])

    def __aiter__(self) -> AsyncIterator[Any]:
        """`async for rec in rb`: each record is valid until the next one is asked for after
        the end of its batch."""
        return self._records()

    async def _records(self) -> AsyncIterator[Any]:
        while True:
            for r in await self.aread():
                yield r

    # lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap the ring. The map itself stays open: its owner closes it."""
        if self.closed:
            return
        self.closed = True
        if not self.map.fd.closed:
            self.release()
        self._cons_mv.release()
        unmap(self._prod_map, self._views[1:])
        unmap(self._cons_map, ())


class UserRecord:
    """Space reserved in a user ring buffer: fill `data`, then `submit()` or `discard()`.

    As a context manager it submits on normal exit and discards when the block raises."""

    __slots__ = ("_done", "_off", "_ring", "data", "size")

    def __init__(self, ring: UserRingBuffer, off: int, size: int) -> None:
        self._ring = ring
        self._off = off
        self.size = size
        self.data = ring._data[off + HDR_SZ : off + HDR_SZ + size]
        self._done = False

    def submit(self) -> None:
        self._finish(self.size)

    def discard(self) -> None:
        self._finish(self.size | DISCARD_BIT)

    def _finish(self, header: int) -> None:
        if self._done:
            raise BPFError("user ring buffer record already submitted or discarded")
        self._done = True
        self.data.release()
        # Clearing BUSY is the commit: a plain (release, on x86-64) store after the payload.
        _U32.pack_into(self._ring._data, self._off, header)

    def __enter__(self) -> UserRecord:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._done:
            if exc_type is None:
                self.submit()
            else:
                self.discard()


class UserRingBuffer(Closing):
    """Writes records into a USER_RINGBUF map, for a BPF program to take with
    `bpf_user_ringbuf_drain`. Records are committed in any order, but the kernel stops at the
    first one still reserved. Not thread-safe: one producer per ring."""

    def __init__(self, m: Map) -> None:
        require_tso("user ring buffer")
        self.map = m
        self.size = _geometry(m, t.MapType.USER_RINGBUF)
        self.max_record = self.size - HDR_SZ
        fd = m.fd.raw
        ps = page_size()
        # The kernel owns the consumer page here and refuses to map it writable.
        self._cons_map = map_shared(fd, ps, 0, writable=False)
        try:
            self._prod_map = map_shared(fd, ps + 2 * self.size, ps, writable=True)
        except BaseException:
            self._cons_map.close()
            raise
        self._fd = fd
        self._cons_mv = memoryview(self._cons_map)[:8]
        prod_mv = memoryview(self._prod_map)
        self._prod_mv = prod_mv[:8]
        self._data = prod_mv[ps:]
        self._views = (self._prod_mv, self._data, prod_mv)
        self._mask = self.size - 1
        self._prod: int = _U64.unpack_from(self._prod_mv, 0)[0]
        self.closed = False

    def free(self) -> int:
        """Bytes the producer may still reserve (headers included)."""
        return self.size - (self._prod - int(_U64.unpack_from(self._cons_mv, 0)[0]))

    def reserve(self, size: int) -> UserRecord | None:
        """Space for a `size`-byte record, or None when the ring has no room for it now."""
        if size <= 0 or size > self.max_record:
            raise ValueError(f"a record of {size} bytes does not fit a {self.size}-byte ring")
        total = (size + HDR_SZ + 7) & ~7
        cons = _U64.unpack_from(self._cons_mv, 0)[0]  # acquire: the kernel is done below it
        if self._prod - cons + total > self.size:
            return None
        off = self._prod & self._mask
        _HDR.pack_into(self._data, off, size | BUSY_BIT, 0)
        self._prod += total
        # Publishing the position after the BUSY header: the kernel never sees an unmarked record.
        _U64.pack_into(self._prod_mv, 0, self._prod)
        return UserRecord(self, off, size)

    def reserve_blocking(self, size: int, timeout: float | None = None) -> UserRecord | None:
        """Like `reserve`, but wait (up to `timeout` seconds) for the kernel to drain enough."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rec = self.reserve(size)
            if rec is not None:
                return rec
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            # The map polls writable whenever it is not completely full, which may still be too
            # little room for this record: then wait a little instead of spinning.
            if wait_fds([self._fd], select.POLLOUT, left):
                time.sleep(0.0005)

    def write(self, data: bytes | bytearray | memoryview) -> bool:
        """Reserve, copy `data` in and submit; False when the ring has no room."""
        rec = self.reserve(len(data))
        if rec is None:
            return False
        rec.data[:] = data
        rec.submit()
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cons_mv.release()
        unmap(self._prod_map, self._views)
        unmap(self._cons_map, ())


__all__ = ["BUSY_BIT", "DISCARD_BIT", "HDR_SZ", "RingBuffer", "UserRecord", "UserRingBuffer"]
