"""Consuming BPF ring-buffer and perf-buffer records in Python, against libbpf in C.

    sudo .venv/bin/python bench/bpf/ringbuf.py [--quick] [--json]

Each round first produces N 16-byte records with the programs of tests/bpf/progs (ringbuf.bpf.c's
`produce`, one BPF_PROG_TEST_RUN with bpf_loop; perf_output.bpf.c's `emit`, one run per sample
pinned to CPU 0), then times consumption only. The floor is bench/bpf/ringbuf_floor.c, built with
gcc against libbpf into a temporary directory: `ring_buffer__consume` and `perf_buffer__consume`
with a callback that counts, over the same programs. Prints the median of the rounds with
min..max, as a Markdown table; the figures in docs/benchmarks.md come from it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROGS = ROOT / "tests" / "bpf" / "progs"
sys.path.insert(0, str(ROOT))

from remora.bpf.collection import Collection  # noqa: E402
from remora.bpf.elf import read_elf  # noqa: E402
from remora.bpf.perf import PerfReader  # noqa: E402
from remora.bpf.ringbuf import RingBuffer  # noqa: E402

BPF_RB_NO_WAKEUP = 1
RECORD = 24  # a 16-byte event and its 8-byte header
PERF_RECORD = 32  # perf_event_header, u32 size, 16 bytes padded to 20


class Event(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("len", ctypes.c_uint32), ("tag", ctypes.c_uint32)]


class ProduceArgs(ctypes.Structure):  # struct produce_args in ringbuf.bpf.c
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


def _pow2(n: int) -> int:
    p = 4096
    while p < n:
        p <<= 1
    return p


def compile_objs(out: Path) -> dict[str, Path]:
    clang = shutil.which("clang")
    if clang is None:
        sys.exit("clang is required to build the producer programs")
    objs = {}
    flags = [clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c"]
    for name in ("ringbuf", "perf_output"):
        obj = out / f"{name}.o"
        subprocess.run(
            [*flags, str(PROGS / f"{name}.bpf.c"), "-o", str(obj)],
            check=True,
        )
        objs[name] = obj
    return objs


def bench_ring(obj: Path, n: int, rounds: int) -> dict[str, list[float]]:
    """Events/s for each way of consuming: records as views, a callback, counts, ctypes."""
    spec = read_elf(obj)
    spec.maps["events"].max_entries = _pow2(n * RECORD + 4096)
    out: dict[str, list[float]] = {}
    with Collection.load(spec, programs=["produce"]) as c:
        prog = c.programs["produce"]
        args = bytes(ProduceArgs(count=n, flags=BPF_RB_NO_WAKEUP))

        def batches(rb: RingBuffer) -> int:
            got = 0
            while True:
                batch = rb.read(65536)
                if not batch:
                    return got
                got += len(batch)

        def callback(rb: RingBuffer) -> int:
            return rb.consume(_noop)

        modes: dict[str, tuple[Callable[[RingBuffer], int], Any]] = {
            "read (memoryview records)": (batches, None),
            "consume (callback per record)": (callback, None),
            "count (no record objects)": (RingBuffer.count, None),
            "read with ctype=Event": (batches, Event),
        }
        for name, (fn, ctype) in modes.items():
            rates = out.setdefault(name, [])
            # one reader per ring at a time: each keeps its own copy of the consumer position
            typed = {"ctype": ctype, "btf": spec.btf, "btf_type": "event"} if ctype else {}
            with RingBuffer(c.maps["events"], **typed) as rb:
                for _ in range(rounds):
                    res = ProduceArgs.from_buffer_copy(prog.test_run(args).data_out)
                    assert res.ok == n, (res.ok, res.failed)
                    t0 = time.perf_counter()
                    got = fn(rb)
                    dt = time.perf_counter() - t0
                    rb.release()
                    assert got == n, (name, got)
                    rates.append(n / dt)
    return out


def _noop(_: object) -> None:
    pass


def bench_perf(obj: Path, n: int, rounds: int) -> list[float]:
    pages = _pow2(n * PERF_RECORD + 4096) // 4096
    rates = []
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})  # every sample in CPU 0's ring, as in the C floor
    try:
        with Collection.load(obj) as c, PerfReader(c.maps["events"], pages=pages) as pr:
            for _ in range(rounds):
                c.programs["emit"].test_run(bytes(64), repeat=n)
                t0 = time.perf_counter()
                got = 0
                while True:
                    batch = pr.read(65536)
                    if not batch:
                        break
                    got += len(batch)
                dt = time.perf_counter() - t0
                pr.release()
                assert got == n, got
                rates.append(n / dt)
    finally:
        os.sched_setaffinity(0, before)
    return rates


def c_floor(objs: dict[str, Path], n: int, n_perf: int, rounds: int, tmp: Path) -> dict[str, Any]:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return {}
    exe = tmp / "ringbuf_floor"
    subprocess.run([cc, "-O2", str(HERE / "ringbuf_floor.c"), "-o", str(exe), "-lbpf"], check=True)
    args = [str(exe), str(objs["ringbuf"]), str(objs["perf_output"]), str(n), str(n_perf)]
    res = subprocess.run([*args, str(rounds)], capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        return {}
    result: dict[str, Any] = json.loads(res.stdout)
    return result


def summary(rates: list[float]) -> str:
    if not rates:
        return "n/a"
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}..{max(rates):,.0f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = 200_000 if args.quick else 2_000_000
    n_perf = 100_000 if args.quick else 500_000
    rounds = 3 if args.quick else 5
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        objs = compile_objs(tmp)
        ring = bench_ring(objs["ringbuf"], n, rounds)
        perf = bench_perf(objs["perf_output"], n_perf, rounds)
        floor = c_floor(objs, n, n_perf, rounds, tmp)
    if args.json:
        print(json.dumps({"ring": ring, "perf": perf, "floor": floor}))
        return
    c_ring, c_perf = floor.get("ringbuf", []), floor.get("perf", [])
    print(f"{n:,} ring-buffer records and {n_perf:,} perf samples of 16 bytes per round, ")
    print(f"{rounds} rounds; median events/s (min..max)\n")
    print("| consumer | events/s | ratio to C |")
    print("| --- | ---: | ---: |")
    cr = statistics.median(c_ring) if c_ring else 0
    for name, rates in ring.items():
        ratio = f"{statistics.median(rates) / cr:.3f}" if cr else ""
        print(f"| ring buffer, remora {name} | {summary(rates)} | {ratio} |")
    print(f"| ring buffer, C libbpf ring_buffer__consume | {summary(c_ring)} | 1 |")
    cp = statistics.median(c_perf) if c_perf else 0
    ratio = f"{statistics.median(perf) / cp:.3f}" if cp else ""
    print(f"| perf buffer, remora PerfReader.read | {summary(perf)} | {ratio} |")
    print(f"| perf buffer, C libbpf perf_buffer__consume | {summary(c_perf)} | 1 |")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root: bpf(2) needs CAP_BPF")
    main()
