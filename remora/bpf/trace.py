"""`remora bpf trace`: load an object, attach what its SEC names say, print what it emits.

The goal is bcc's and bpftrace's experience for prebuilt objects. Every program whose SEC name
names a target is attached, and every ring buffer and perf event array is read. Each record
prints as one line, decoded through the object's own BTF when `--type` names the record's
struct. It stops after N events or S seconds, or on Ctrl-C, and then detaches everything it
attached, because links close with the process.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TextIO

from remora.bpf.btf.decode import decode
from remora.bpf.btf.types import Kind, Spec
from remora.bpf.collection import Collection
from remora.bpf.errors import BPFError
from remora.bpf.sys import types as t


def record_type(btf: Spec | None, name: str) -> tuple[int, int]:
    """(type id, size) of the struct or union `name` in the object's BTF."""
    if btf is None:
        raise BPFError("--type needs the object's BTF (build it with clang -g)")
    found = btf.by_name(name, Kind.STRUCT) or btf.by_name(name, Kind.UNION)
    if found is None:
        raise BPFError(f"--type {name}: no struct or union of that name in the object's BTF")
    return found.id, btf.sizeof(found.id)


def format_record(
    map_name: str, data: memoryview | bytes, btf: Spec | None, typed: tuple[int, int] | None
) -> dict[str, Any]:
    """One record as a plain dict: decoded when it is typed and long enough, else hex."""
    out: dict[str, Any] = {"map": map_name, "len": len(data)}
    if typed is not None and btf is not None:
        tid, size = typed
        if len(data) >= size:
            out["event"] = decode(btf, tid, data)
            return out
        out["error"] = f"record of {len(data)} bytes is shorter than the type's {size}"
    out["data"] = bytes(data).hex()
    return out


def render_line(record: dict[str, Any]) -> str:
    if "event" in record:
        fields = record["event"]
        body = (
            " ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else fields
        )
        return f"{record['map']}: {body}"
    extra = f" ({record['error']})" if "error" in record else ""
    return f"{record['map']}: {record['len']} bytes {record['data']}{extra}"


def run_trace(
    path: str,
    type_name: str | None = None,
    count: int = 0,
    duration: float = 0.0,
    as_json: bool = False,
    constants: dict[str, Any] | None = None,
    kernel_btf: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Trace until `count` events or `duration` seconds (0: no limit) or Ctrl-C. Returns the
    number of events printed."""
    from remora.bpf.link import auto_attach
    from remora.bpf.perf import PerfReader
    from remora.bpf.ringbuf import RingBuffer

    with ExitStack() as stack:
        coll = stack.enter_context(
            Collection.load(path, constants=constants, kernel_btf=kernel_btf)
        )
        btf = coll.spec.btf
        typed = record_type(btf, type_name) if type_name else None
        # Readers first: a perf event array drops samples for CPUs that have no reader yet,
        # so attaching first would lose the events that come right after the attach.
        readers: list[tuple[str, Any]] = []
        for name, m in coll.maps.items():
            if m.type == t.MapType.RINGBUF:
                readers.append((name, stack.enter_context(RingBuffer(m))))
            elif m.type == t.MapType.PERF_EVENT_ARRAY:
                readers.append((name, stack.enter_context(PerfReader(m))))
        if not readers:
            raise BPFError(f"{path}: no ring buffer or perf event array to read events from")
        attached = 0
        for prog in coll.programs.values():
            try:
                link = stack.enter_context(auto_attach(prog))
            except BPFError as e:
                print(f"not attached: {e}", file=err)
                continue
            print(f"attached {prog.name} to {link.kind} {link.target}", file=err)
            attached += 1
        if not attached:
            raise BPFError(f"{path}: no program has a SEC name that says where to attach")
        deadline = clock() + duration if duration > 0 else None
        printed = 0
        wait = 0.2 if len(readers) == 1 else 0.05
        try:
            while not (count and printed >= count):
                now = clock()
                if deadline is not None and now >= deadline:
                    break
                step = wait if deadline is None else max(0.0, min(wait, deadline - now))
                for name, reader in readers:
                    limit = count - printed if count else 0
                    for rec in reader.poll(timeout=step, limit=limit):
                        line = format_record(name, rec, btf, typed)
                        print(json.dumps(line) if as_json else render_line(line), file=out)
                        printed += 1
                        if count and printed >= count:
                            break
                out.flush()
        except KeyboardInterrupt:
            pass
        for name, reader in readers:
            lost = getattr(reader, "lost_total", 0)
            if lost:
                print(f"{name}: {lost} samples lost (the ring was full)", file=err)
        return printed
