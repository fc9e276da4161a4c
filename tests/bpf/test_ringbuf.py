from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remora.bpf.btf.check import check_ctype
from remora.bpf.collection import Collection
from remora.bpf.elf import read_elf
from remora.bpf.errors import BPFError, BPFTypeMismatchError
from remora.bpf.maps import Map, MapSpec
from remora.bpf.records import ShortRecordError, btf_type_id
from remora.bpf.ringbuf import RingBuffer, UserRingBuffer
from remora.bpf.sys.types import MapType

pytestmark = pytest.mark.usefixtures("bpf_root")

RING = 16384  # events' max_entries in progs/ringbuf.bpf.c
BPF_RB_NO_WAKEUP = 1


class Event(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("len", ctypes.c_uint32), ("tag", ctypes.c_uint32)]


class ProduceArgs(ctypes.Structure):
    _fields_ = [
        ("count", ctypes.c_uint32),
        ("discard_every", ctypes.c_uint32),
        ("seq", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("min_size", ctypes.c_uint32),
        ("span", ctypes.c_uint32),
        ("ok", ctypes.c_uint32),
        ("failed", ctypes.c_uint32),
        ("last_err", ctypes.c_int32),
        ("last", Event),
        ("payload", ctypes.c_uint8 * 256),
    ]


class DrainArgs(ctypes.Structure):
    _fields_ = [
        ("sum", ctypes.c_uint64),
        ("records", ctypes.c_uint32),
        ("short_records", ctypes.c_uint32),
        ("ret", ctypes.c_int64),
    ]


@pytest.fixture
def coll(bpf_objs: dict[str, Path]) -> Iterator[Collection]:
    with Collection.load(bpf_objs["ringbuf"]) as c:
        btf = c.spec.btf
        assert btf is not None
        # the test's own view of the contexts must match the program's, or every test misreads
        check_ctype(ProduceArgs, (btf, btf_type_id(btf, "produce_args")), "produce_args")
        check_ctype(DrainArgs, (btf, btf_type_id(btf, "drain_args")), "drain_args")
        yield c


def produce(c: Collection, count: int, seq: int = 0, discard_every: int = 0) -> ProduceArgs:
    """Reserve/submit `count` 16-byte events (discarding every n-th) in one program run."""
    a = ProduceArgs(count=count, seq=seq, discard_every=discard_every)
    out = c.programs["produce"].test_run(bytes(a)).data_out
    return ProduceArgs.from_buffer_copy(out)


def output(
    c: Collection, count: int, seq: int, min_size: int, span: int, payload: bytes
) -> ProduceArgs:
    """bpf_ringbuf_output of `count` records; record i is min_size + i % span bytes: its seq,
    then the rest of `payload`."""
    a = ProduceArgs(count=count, seq=seq, min_size=min_size, span=span)
    a.payload[:] = payload
    out = c.programs["output"].test_run(bytes(a)).data_out
    return ProduceArgs.from_buffer_copy(out)


def expected(i: int, seq: int, min_size: int, span: int, payload: bytes) -> bytes:
    size = min_size + (i % span if span else 0)
    return struct.pack("<Q", seq + i) + payload[8:size]


def test_counts_and_contents(coll: Collection) -> None:
    with RingBuffer(coll.maps["events"]) as rb:
        assert rb.read() == []
        res = produce(coll, 100, seq=1000)
        assert (res.ok, res.failed) == (100, 0)
        recs = rb.read()
        assert len(recs) == 100
        assert all(isinstance(r, memoryview) and r.readonly for r in recs)
        assert [struct.unpack("<QII", r) for r in recs] == [
            (1000 + i, 16, 0xE7E7) for i in range(100)
        ]
        assert rb.read() == []
        assert rb.positions() == (100 * 24, 100 * 24)  # 8-byte header + 16 bytes each
        assert rb.available() == 0


def test_wraparound_over_many_rounds(coll: Collection) -> None:
    payload = os.urandom(256)
    min_size, span, per_round = 8, 200, 120  # sizes 8..127, about 9.5 KiB a round
    pos = straddled = total = 0
    with RingBuffer(coll.maps["events"]) as rb:
        for rnd in range(40):
            seq = rnd * per_round
            res = output(coll, per_round, seq, min_size, span, payload)
            assert (res.ok, res.failed) == (per_round, 0)
            recs = rb.read()
            assert [bytes(r) for r in recs] == [
                expected(i, seq, min_size, span, payload) for i in range(per_round)
            ]
            for r in recs:
                if (pos % RING) + 8 + len(r) > RING:
                    straddled += 1
                pos += (len(r) + 15) & ~7
                total += len(r)
            del recs
            rb.release()  # the round's records stay the reader's until released
    assert total > 15 * RING
    assert straddled > 0  # some records crossed the ring end and still read whole


def test_wraparound_of_same_size_records(coll: Collection) -> None:
    # 24-byte records do not divide the ring: one straddles its end every lap
    with RingBuffer(coll.maps["events"], ctype=Event) as rb:
        got: list[int] = []
        for rnd in range(12):
            assert produce(coll, 500, seq=rnd * 500).ok == 500
            batch = rb.read()
            assert len(batch) == 500
            got += [e.seq for e in batch]
            assert rb.count() == 0
        assert got == list(range(6000))
        assert rb.positions()[0] == 6000 * 24 > 8 * RING


def test_discarded_records_are_skipped(coll: Collection) -> None:
    with RingBuffer(coll.maps["events"]) as rb:
        res = produce(coll, 30, discard_every=3)
        assert res.ok == 20
        seqs = [struct.unpack_from("<Q", r)[0] for r in rb.read()]
        assert seqs == [i for i in range(30) if i % 3 != 2]
        rb.release()
        assert rb.positions() == (30 * 24, 30 * 24)  # discarded space was consumed too


def test_full_ring_refuses_the_producer(coll: Collection) -> None:
    fits = RING // 24
    with RingBuffer(coll.maps["events"]) as rb:
        res = produce(coll, fits + 100)
        assert (res.ok, res.failed) == (fits, 100)  # bpf_ringbuf_reserve returned NULL
        res = output(coll, 5, 0, 16, 0, bytes(256))
        assert (res.ok, res.failed, res.last_err) == (0, 5, -errno.EAGAIN)  # output's full ring
        assert rb.count() == fits
        assert produce(coll, 10).ok == 10  # consumed space is the producer's again
        assert rb.count() == 10


def test_batches_publish_the_consumer_position_once(coll: Collection) -> None:
    with RingBuffer(coll.maps["events"]) as rb:
        produce(coll, 100)
        first = rb.read(limit=30)
        assert len(first) == 30
        assert rb.positions() == (0, 2400)  # nothing published while the batch is in use
        assert struct.unpack_from("<Q", first[29])[0] == 29
        second = rb.read(limit=30)  # publishes the first batch, not the second
        assert rb.positions()[0] == 30 * 24
        assert struct.unpack_from("<Q", second[0])[0] == 30
        seen: list[int] = []
        assert rb.consume(lambda r: seen.append(struct.unpack_from("<Q", r)[0]), limit=30) == 30
        assert seen == list(range(60, 90))
        assert rb.positions()[0] == 90 * 24  # consume() releases at the end of its batch
        assert rb.count() == 10
        assert rb.positions() == (2400, 2400)
        assert rb.count() == 0


def test_poll_times_out_empty_and_wakes_on_records(coll: Collection) -> None:
    with RingBuffer(coll.maps["events"]) as rb:
        t0 = time.monotonic()
        assert rb.poll(timeout=0.2) == []
        assert 0.15 <= time.monotonic() - t0 < 2
        timer = threading.Timer(0.1, produce, (coll, 5))
        timer.start()
        try:
            t0 = time.monotonic()
            recs = rb.poll(timeout=10)
            waited = time.monotonic() - t0
        finally:
            timer.join()
        assert waited < 5
        recs += rb.read() if len(recs) < 5 else []
        assert [struct.unpack_from("<Q", r)[0] for r in recs] == list(range(5))


async def test_async_iterator(coll: Collection) -> None:
    loop = asyncio.get_running_loop()
    with RingBuffer(coll.maps["events"], ctype=Event) as rb:
        # nothing there: the wait is cancelled cleanly, and its reader is removed
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(rb.aread(), 0.1)
        loop.call_later(0.05, produce, coll, 10, 500)
        loop.call_later(0.15, produce, coll, 10, 510)
        got: list[int] = []

        async def take() -> None:
            async for ev in rb:
                got.append(ev.seq)
                if len(got) == 20:
                    break

        await asyncio.wait_for(take(), 10)
        assert got == list(range(500, 520))


def test_decode_into_ctypes_checked_against_btf(coll: Collection) -> None:
    class Swapped(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_uint64), ("tag", ctypes.c_uint32), ("len", ctypes.c_uint32)]

    class Long(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_uint64), ("len", ctypes.c_uint32), ("tag", ctypes.c_uint64)]

    events, btf = coll.maps["events"], coll.spec.btf
    with pytest.raises(BPFTypeMismatchError, match=r"field 'tag' of Swapped is named 'len'"):
        RingBuffer(events, ctype=Swapped, btf=btf, btf_type="event")
    with pytest.raises(BPFTypeMismatchError, match="Long is 24 bytes but BTF struct event is 16"):
        RingBuffer(events, ctype=Long, btf=btf, btf_type="struct event")
    with pytest.raises(BPFTypeMismatchError, match="no type named 'nope'"):
        RingBuffer(events, ctype=Event, btf=btf, btf_type="nope")
    with pytest.raises(BPFError, match="needs the object's BTF"):
        RingBuffer(events, ctype=Event, btf_type="event")
    with RingBuffer(events, ctype=Event, btf=btf, btf_type="event") as rb:
        produce(coll, 3, seq=7)
        evs = rb.read()
        assert [(e.seq, e.len, e.tag) for e in evs] == [
            (7, 16, 0xE7E7),
            (8, 16, 0xE7E7),
            (9, 16, 0xE7E7),
        ]
        produce(coll, 1, seq=99)
        assert evs[0].seq == 7  # decoded records are copies: they outlive their batch
        output(coll, 2, 0, 12, 0, bytes(256))  # 12-byte records cannot be a 16-byte Event
        with pytest.raises(ShortRecordError, match="12 bytes is shorter than Event"):
            rb.read()


def test_records_outliving_close_and_wrong_maps(coll: Collection) -> None:
    rb = RingBuffer(coll.maps["events"])
    produce(coll, 2)
    held = rb.read()
    rb.close()
    rb.close()  # idempotent
    assert struct.unpack_from("<Q", held[1])[0] == 1  # still mapped while a record is held
    del held  # and unmapped now; no_fd_leak checks nothing stayed open
    with pytest.raises(BPFError, match="is USER_RINGBUF, not RINGBUF"):
        RingBuffer(coll.maps["user_events"])
    with pytest.raises(BPFError, match="is RINGBUF, not USER_RINGBUF"):
        UserRingBuffer(coll.maps["events"])
    with Map.create(MapSpec("h", MapType.HASH, 4, 4, 4)) as h, pytest.raises(BPFError):
        RingBuffer(h)


def test_a_large_ring_consumed_by_count(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["ringbuf"])
    spec.maps["events"].max_entries = 1 << 22
    with Collection.load(spec, programs=["produce"]) as c, RingBuffer(c.maps["events"]) as rb:
        a = ProduceArgs(count=150_000, flags=BPF_RB_NO_WAKEUP)
        res = ProduceArgs.from_buffer_copy(c.programs["produce"].test_run(bytes(a)).data_out)
        assert res.ok == 150_000
        assert rb.count(limit=1000) == 1000
        assert rb.count() == 149_000


# user ring buffer -------------------------------------------------------------------------------
def drain(c: Collection) -> DrainArgs:
    out = c.programs["drain"].test_run(bytes(DrainArgs())).data_out
    return DrainArgs.from_buffer_copy(out)


def test_user_ringbuf_reserve_submit_discard_drained_by_bpf(coll: Collection) -> None:
    with UserRingBuffer(coll.maps["user_events"]) as ur:
        for v in range(1, 51):
            assert ur.write(struct.pack("<Q", v))
        rec = ur.reserve(8)
        assert rec is not None
        rec.data[:] = struct.pack("<Q", 10_000)
        rec.discard()
        with ur.reserve(16) as rec2:  # submitted on exit
            assert rec2 is not None
            rec2.data[:] = struct.pack("<QQ", 7, 0)
        with pytest.raises(RuntimeError), ur.reserve(8) as rec3:  # discarded: the block raised
            assert rec3 is not None
            rec3.data[:] = struct.pack("<Q", 20_000)
            raise RuntimeError
        assert ur.write(b"abc")  # shorter than the u64 the program reads
        d = drain(coll)
        assert (d.records, d.sum, d.short_records, d.ret) == (52, sum(range(1, 51)) + 7, 1, 52)
        assert ur.free() == ur.size
        assert drain(coll).records == 0


def test_user_ringbuf_full_busy_and_blocking(coll: Collection) -> None:
    with UserRingBuffer(coll.maps["user_events"]) as ur:
        n = 0
        while ur.write(struct.pack("<Q", 1)):
            n += 1
        assert n == RING // 16
        assert ur.reserve(8) is None
        t0 = time.monotonic()
        assert ur.reserve_blocking(8, timeout=0.2) is None
        assert time.monotonic() - t0 >= 0.15
        assert drain(coll).records == n
        held = ur.reserve(8)  # reserved, not yet submitted: BUSY
        assert held is not None
        held.data[:] = struct.pack("<Q", 5)
        assert ur.write(struct.pack("<Q", 6))
        assert drain(coll).records == 0  # the kernel stops at the BUSY record
        held.submit()
        with pytest.raises(BPFError, match="already submitted"):
            held.submit()
        d = drain(coll)
        assert (d.records, d.sum) == (2, 11)
        with pytest.raises(ValueError):
            ur.reserve(RING)
        rec = ur.reserve_blocking(8, timeout=1)
        assert rec is not None
        rec.discard()
