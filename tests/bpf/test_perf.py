from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remora.bpf.collection import Collection
from remora.bpf.cpus import possible_cpus
from remora.bpf.errors import BPFError, BPFSyscallError, BPFTypeMismatchError
from remora.bpf.maps import Map, MapSpec
from remora.bpf.perf import PerfReader
from remora.bpf.records import ShortRecordError
from remora.bpf.sys.perf import online_cpus, page_size
from remora.bpf.sys.types import MapType

pytestmark = pytest.mark.usefixtures("bpf_root")

PKT = bytes(64)


class Sample(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("cpu", ctypes.c_uint32), ("size", ctypes.c_uint32)]


@contextlib.contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Run test_run on one CPU, so every sample goes to that CPU's ring."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def load(objs: dict[str, Path], min_size: int = 16, span: int = 0) -> Collection:
    return Collection.load(objs["perf_output"], constants={"min_size": min_size, "span": span})


def counters(c: Collection) -> tuple[int, int, int]:
    ok, failed, err = (c.variable(n) for n in ("ok", "failed", "last_err"))
    return (
        int.from_bytes(ok, "little"),
        int.from_bytes(failed, "little"),
        int.from_bytes(err, "little", signed=True),
    )


def emit(c: Collection, n: int) -> None:
    c.programs["emit"].test_run(PKT, repeat=n)


def padded(size: int) -> int:
    """The raw sample size the kernel reports: u32 size + data end on 8 bytes."""
    return ((size + 4 + 7) & ~7) - 4


def check_sample(s: memoryview, cpu: int | None = None) -> int:
    seq, scpu, size = struct.unpack_from("<QII", s)
    assert len(s) == padded(size)
    assert bytes(s[16:]) == bytes(len(s) - 16)  # the program's zeros, then the kernel's padding
    if cpu is not None:
        assert scpu == cpu
    return int(seq)


def test_samples_from_every_cpu_ring(bpf_objs: dict[str, Path]) -> None:
    with load(bpf_objs) as c:
        events = c.maps["events"]
        assert events.max_entries == possible_cpus()  # sized by MapSpec.resolved()
        with PerfReader(events) as pr:
            assert sorted(r.cpu for r in pr.rings) == online_cpus()
            seqs: list[int] = []
            for cpu in online_cpus():
                with on_cpu(cpu):
                    emit(c, 25)
                recs = pr.read_cpu(cpu)
                assert len(recs) == 25
                seqs += [check_sample(s, cpu) for s in recs]
            assert sorted(seqs) == list(range(25 * len(online_cpus())))
            assert counters(c)[:2] == (25 * len(online_cpus()), 0)
            assert pr.read() == []
            assert pr.lost_total == 0


def test_records_that_wrap_the_ring_end(bpf_objs: dict[str, Path]) -> None:
    # 100..106-byte samples make 112..120-byte records, which do not divide a 4 KiB ring
    with load(bpf_objs, min_size=100, span=7) as c, PerfReader(c.maps["events"], pages=1) as pr:
        seqs: list[int] = []
        with on_cpu(0):
            for _ in range(30):
                emit(c, 30)
                recs = pr.read()
                assert len(recs) == 30
                seqs += [check_sample(s, 0) for s in recs]
                del recs
                pr.release()  # the round's samples stay the reader's until released
        assert seqs == list(range(900))
        assert 20 * page_size() < 900 * 112  # many laps of the ring
        assert pr.lost_total == 0


def test_full_ring_counts_lost_samples(bpf_objs: dict[str, Path]) -> None:
    with load(bpf_objs, min_size=100) as c, PerfReader(c.maps["events"], pages=1) as pr:
        with on_cpu(0):
            emit(c, 300)
            ok, failed, err = counters(c)
            assert ok + failed == 300
            assert failed > 200
            assert err == -errno.ENOSPC
            assert len(pr.read()) == ok
            assert pr.lost_total == 0  # the kernel reports the loss with its next sample
            pr.release()
            emit(c, 1)
            assert len(pr.read()) == 1
        assert pr.lost == {cpu: failed if cpu == 0 else 0 for cpu in online_cpus()}


def test_batch_limit_and_consume(bpf_objs: dict[str, Path]) -> None:
    with load(bpf_objs) as c, PerfReader(c.maps["events"]) as pr:
        with on_cpu(0):
            emit(c, 50)
        first = pr.read(limit=20)
        assert [check_sample(s) for s in first] == list(range(20))
        seen: list[int] = []
        assert pr.consume(lambda s: seen.append(check_sample(s)), limit=20) == 20
        assert seen == list(range(20, 40))
        assert len(pr.read()) == 10


def test_poll_timeout_and_wakeup(bpf_objs: dict[str, Path]) -> None:
    with load(bpf_objs) as c, PerfReader(c.maps["events"]) as pr:
        t0 = time.monotonic()
        assert pr.poll(timeout=0.2) == []
        assert 0.15 <= time.monotonic() - t0 < 2
        timer = threading.Timer(0.1, emit, (c, 3))
        timer.start()
        try:
            t0 = time.monotonic()
            got = pr.poll(timeout=10)
            waited = time.monotonic() - t0
        finally:
            timer.join()
        assert waited < 5  # woken by the first sample (wakeup_events=1)
        got += pr.read() if len(got) < 3 else []
        assert sorted(check_sample(s) for s in got) == [0, 1, 2]


def test_watermark_holds_the_wakeup_back(bpf_objs: dict[str, Path]) -> None:
    with load(bpf_objs) as c, PerfReader(c.maps["events"], watermark=2048) as pr:
        timer = threading.Timer(0.05, emit, (c, 2))
        timer.start()
        try:
            t0 = time.monotonic()
            got = pr.poll(timeout=0.5)
            waited = time.monotonic() - t0
        finally:
            timer.join()
        assert waited >= 0.45  # 64 bytes waiting is below the watermark: no wakeup
        assert len(got) == 2  # but poll hands over what arrived when it times out
    with pytest.raises(ValueError, match="power of two"):
        PerfReader(c.maps["events"], pages=3)


async def test_async_iterator(bpf_objs: dict[str, Path]) -> None:
    loop = asyncio.get_running_loop()
    with load(bpf_objs) as c, PerfReader(c.maps["events"], ctype=Sample) as pr:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pr.aread(), 0.1)
        loop.call_later(0.05, emit, c, 4)
        loop.call_later(0.15, emit, c, 4)
        got: list[int] = []

        async def take() -> None:
            async for s in pr:
                got.append(s.seq)
                if len(got) == 8:
                    break

        await asyncio.wait_for(take(), 10)
        assert sorted(got) == list(range(8))


def test_decode_into_ctypes_checked_against_btf(bpf_objs: dict[str, Path]) -> None:
    class Renamed(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_uint64), ("cpu", ctypes.c_uint32), ("len", ctypes.c_uint32)]

    class Big(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_uint64), ("rest", ctypes.c_uint8 * 24)]

    with load(bpf_objs) as c:
        events, btf = c.maps["events"], c.spec.btf
        with pytest.raises(BPFTypeMismatchError, match="field 'len' of Renamed is named 'size'"):
            PerfReader(events, ctype=Renamed, btf=btf, btf_type="sample")
        with PerfReader(events, ctype=Sample, btf=btf, btf_type="sample") as pr:
            with on_cpu(1 if 1 in online_cpus() else 0):
                emit(c, 2)
            got = pr.read()
            assert [(s.seq, s.size) for s in got] == [(0, 16), (1, 16)]
        with PerfReader(events, ctype=Big) as pr:
            emit(c, 1)
            with pytest.raises(ShortRecordError, match="20 bytes is shorter than Big"):
                pr.read()


def test_close_removes_map_entries_and_partial_opens_leak_nothing(
    bpf_objs: dict[str, Path],
) -> None:
    with load(bpf_objs) as c:
        with PerfReader(c.maps["events"]):
            pass
        emit(c, 1)
        assert counters(c)[2] == -errno.ENOENT  # no event at this CPU's index any more
        with pytest.raises(KeyError):
            del c.maps["events"][0]
    with Map.create(MapSpec("one", MapType.PERF_EVENT_ARRAY, 4, 4, 1)) as small:
        if len(online_cpus()) > 1:
            with pytest.raises(BPFError, match="has 1 entries, but CPU 1 is online"):
                PerfReader(small)
    with Map.create(MapSpec("many", MapType.PERF_EVENT_ARRAY, 4, 4, 4096)) as many:
        # CPU 4000 does not exist: the event opened for CPU 0 first must be closed again
        with pytest.raises(BPFSyscallError, match="perf_event_open"):
            PerfReader(many, cpus=[0, 4000])
        with pytest.raises(KeyError):
            del many[0]
    with Map.create(MapSpec("h", MapType.HASH, 4, 4, 4)) as h, pytest.raises(BPFError):
        PerfReader(h)
