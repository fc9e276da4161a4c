"""`PerfReader`: the records BPF programs send with `bpf_perf_event_output` to a
PERF_EVENT_ARRAY map.

Each online CPU gets one PERF_COUNT_SW_BPF_OUTPUT event with its own mmap'd ring (a metadata
page, then a power-of-two number of data pages), and its fd goes into the map at the CPU's
index, which is where `BPF_F_CURRENT_CPU` looks. The rings follow include/uapi/linux/perf_event.h:
the kernel advances `data_head` in the metadata page, the reader advances `data_tail`, and each
record starts with a `perf_event_header` (u32 type, u16 misc, u16 size). PERF_RECORD_SAMPLE
records carry the raw sample (a u32 size, then the bytes the program sent, which the kernel pads
with zeros so that size and bytes end on 8 bytes); PERF_RECORD_LOST records count samples that
found the ring full.

Unlike a BPF ring buffer, a perf ring is not mapped twice, so a record that wraps the ring end
is copied into one piece; every other record is a zero-copy view, valid until its ring's tail
moves past it (the next read, `release()` or `close()`).
"""

from __future__ import annotations

import contextlib
import errno
import select
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from remora.bpf.btf.types import Spec
from remora.bpf.errors import BPFError, BPFSyscallError
from remora.bpf.maps import Map
from remora.bpf.records import Decoder, map_shared, require_tso, unmap, wait_fds, wait_readable
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import FD, Closing
from remora.bpf.sys.perf import (
    ATTR_WATERMARK,
    PERF_COUNT_SW_BPF_OUTPUT,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    PERF_SAMPLE_RAW,
    PERF_TYPE_SOFTWARE,
    PerfEventAttr,
    ioctl,
    online_cpus,
    page_size,
    perf_event_open,
)

# struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size.
_DATA_HEAD = 1024
_DATA_TAIL = 1032
_DATA_OFFSET = 1040
_DATA_SIZE = 1048

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<IHH")


class _CpuRing:
    """One CPU's event fd and mapping; the reader owns its tail."""

    def __init__(self, cpu: int, fd: FD, pages: int) -> None:
        self.cpu = cpu
        self.fd = fd
        ps = page_size()
        self.mmap = map_shared(fd.raw, (1 + pages) * ps, 0, writable=True)
        base = memoryview(self.mmap)
        self.meta = base[:ps]
        offset = _U64.unpack_from(self.meta, _DATA_OFFSET)[0] or ps
        self.size = _U64.unpack_from(self.meta, _DATA_SIZE)[0] or pages * ps
        self.data = base[offset : offset + self.size]
        self.views = (self.meta, self.data, base)
        self.tail: int = _U64.unpack_from(self.meta, _DATA_TAIL)[0]
        self.published = self.tail
        self.lost = 0

    def release(self) -> None:
        if self.tail != self.published:
            # A plain store is a release on x86-64: every read of the batch happened before it.
            _U64.pack_into(self.meta, _DATA_TAIL, self.tail)
            self.published = self.tail

    def pending(self) -> bool:
        return bool(_U64.unpack_from(self.meta, _DATA_HEAD)[0] != self.tail)

    def read(self, out: list[Any], limit: int) -> int:
        """Append this ring's samples to `out` (at most `limit` when > 0); returns how many."""
        self.release()
        tail = self.tail
        head = _U64.unpack_from(self.meta, _DATA_HEAD)[0]  # acquire: records below it are whole
        data, size = self.data, self.size
        mask = size - 1
        hdr, u32 = _HDR.unpack_from, _U32.unpack_from
        n = 0
        while tail < head:
            off = tail & mask
            rtype, _, rsize = hdr(data, off)  # 8-byte aligned, so a header never wraps
            end = off + rsize
            rec = (
                data[off:end] if end <= size else memoryview(bytes(data[off:]) + data[: end - size])
            )
            tail += rsize
            if rtype == PERF_RECORD_SAMPLE:
                (raw,) = u32(rec, 8)
                out.append(rec[12 : 12 + raw])
                n += 1
                if n == limit:
                    break
            elif rtype == PERF_RECORD_LOST:
                self.lost += _U64.unpack_from(rec, 16)[0]  # header, id, lost
        self.tail = tail
        return n

    def close(self) -> None:
        self.release()
        unmap(self.mmap, self.views)
        self.fd.close()


class PerfReader(Closing):
    """Reads `bpf_perf_event_output` samples from every online CPU's ring.

    `pages` is each CPU's data size in pages (a power of two). The kernel wakes a waiting reader
    after `wakeup_events` samples, or, when `watermark` is set, once that many bytes are waiting;
    `poll` always returns what arrived when its timeout ends, below those thresholds too.
    Samples are read-only memoryviews that include the kernel's zero padding; with `ctype` (and
    optionally `btf` and `btf_type` to check it, as `RingBuffer` does) they are decoded into
    copies. `lost` holds the count of samples each CPU dropped because its ring was full. On
    close, the reader's entries are removed from the map. Not thread-safe: one reader per map.
    """

    def __init__(
        self,
        m: Map,
        pages: int = 8,
        *,
        watermark: int = 0,
        wakeup_events: int = 1,
        cpus: Iterable[int] | None = None,
        ctype: Any = None,
        btf: Spec | None = None,
        btf_type: str | int | None = None,
    ) -> None:
        require_tso("perf event reader")
        if m.type != t.MapType.PERF_EVENT_ARRAY:
            raise BPFError(f"map {m.name!r} is {m.type.name}, not PERF_EVENT_ARRAY")
        if pages <= 0 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, not {pages}")
        if watermark < 0 or wakeup_events < 1:
            raise ValueError("watermark must be >= 0 and wakeup_events >= 1")
        if watermark >= pages * page_size():
            raise ValueError(f"watermark {watermark} is not below the ring size")
        self.map = m
        self.pages = pages
        self.decode: Decoder | None = None
        if ctype is not None:
            self.decode = Decoder(ctype, btf, btf_type, f"perf event array {m.name!r}")
        elif btf_type is not None:
            raise BPFError(f"perf event array {m.name!r}: btf_type needs a ctype to check")
        wanted = sorted(set(online_cpus() if cpus is None else cpus))
        too_big = [c for c in wanted if c >= m.max_entries]
        if too_big:
            raise BPFError(
                f"map {m.name!r} has {m.max_entries} entries, but CPU {too_big[0]} is online"
            )
        self.rings: list[_CpuRing] = []
        self.closed = False
        try:
            for cpu in wanted:
                self._open(cpu, watermark, wakeup_events)
        except BaseException:
            self.close()
            raise
        self._fds = [r.fd.raw for r in self.rings]

    def _open(self, cpu: int, watermark: int, wakeup_events: int) -> None:
        attr = PerfEventAttr(
            type=PERF_TYPE_SOFTWARE,
            config=PERF_COUNT_SW_BPF_OUTPUT,
            sample_period=1,
            sample_type=PERF_SAMPLE_RAW,
            flags=ATTR_WATERMARK if watermark else 0,
            wakeup_events=watermark or wakeup_events,
        )
        fd = perf_event_open(attr, -1, cpu, f"BPF output event on CPU {cpu}")
        try:
            ring = _CpuRing(cpu, fd, self.pages)
        except BaseException:
            fd.close()
            raise
        self.rings.append(ring)
        ioctl(fd.raw, PERF_EVENT_IOC_ENABLE)
        self.map[cpu] = fd.raw

    @property
    def lost(self) -> dict[int, int]:
        """Samples lost per CPU, as the kernel reported them so far."""
        return {r.cpu: r.lost for r in self.rings}

    @property
    def lost_total(self) -> int:
        return sum(r.lost for r in self.rings)

    def release(self) -> None:
        """Hand the space of the samples returned so far back to the kernel."""
        for r in self.rings:
            r.release()

    def read(self, limit: int = 0) -> list[Any]:
        """The samples waiting in all rings (at most `limit` when > 0), without blocking. The
        previous batch is released first, so its samples are no longer valid."""
        out: list[Any] = []
        for r in self.rings:
            r.read(out, limit - len(out) if limit else 0)
            if limit and len(out) >= limit:
                break
        if self.decode is not None:
            decode = self.decode
            return [decode(s) for s in out]
        return out

    def read_cpu(self, cpu: int, limit: int = 0) -> list[Any]:
        """The samples waiting in one CPU's ring."""
        for r in self.rings:
            if r.cpu == cpu:
                out: list[Any] = []
                r.read(out, limit)
                return out if self.decode is None else [self.decode(s) for s in out]
        raise KeyError(f"no ring for CPU {cpu}")

    def consume(self, callback: Callable[[Any], object], limit: int = 0) -> int:
        """Call `callback` on each waiting sample, then release them all; samples are valid
        only during the call. Returns how many were passed."""
        samples = self.read(limit)
        for s in samples:
            callback(s)
        self.release()
        return len(samples)

    def poll(self, timeout: float | None = None, limit: int = 0) -> list[Any]:
        """Like `read`, but wait up to `timeout` seconds (None: forever) for samples."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Read before waiting: a wakeup that came before this call has been spent already.
            samples = self.read(limit)
            if samples:
                return samples
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not wait_fds(self._fds, select.POLLIN, left):
                return self.read(limit)

    async def aread(self, limit: int = 0) -> list[Any]:
        """Wait in the running event loop (`loop.add_reader` on each CPU's fd) for samples."""
        while True:
            samples = self.read(limit)
            if samples:
                return samples
            await wait_readable(self._fds)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._samples()

    async def _samples(self) -> AsyncIterator[Any]:
        while True:
            for s in await self.aread():
                yield s

    def close(self) -> None:
        """Stop the events, take them out of the map, unmap and close them."""
        if self.closed:
            return
        self.closed = True
        map_open = not self.map.fd.closed
        for r in self.rings:
            if map_open:
                try:
                    del self.map[r.cpu]
                except (KeyError, BPFSyscallError) as e:
                    if not isinstance(e, KeyError) and e.errno != errno.ENOENT:
                        raise
            with contextlib.suppress(BPFSyscallError):
                ioctl(r.fd.raw, PERF_EVENT_IOC_DISABLE)
            r.close()
        self.rings = []
