"""`remora bpf trace` as a user runs it: a subprocess that attaches by SEC name and prints each
event, while this process makes the events happen."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("bpf_root")


def _trace(obj: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "remora", "bpf", "trace", str(obj), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _until_attached(proc: subprocess.Popen[str], programs: int = 2) -> list[str]:
    """Read stderr until the tracer has said, for each program, whether it attached."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(lines) < programs:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith(("attached ", "not attached: ")):
            lines.append(line.strip())
    if len(lines) < programs:
        raise AssertionError(f"the tracer did not report every program: {lines}")
    return lines


def test_trace_prints_decoded_events_from_both_readers_and_stops_at_count(
    bpf_objs: dict[str, Path],
) -> None:
    proc = _trace(
        bpf_objs["trace"],
        "--type",
        "event",
        "--count",
        "6",
        "--json",
        "--set",
        f"target_tgid={os.getpid()}",
    )
    try:
        said = _until_attached(proc)
        assert "attached on_getppid to tracepoint syscalls/sys_enter_getppid" in said
        for _ in range(3):
            os.getppid()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 6
    by_map: dict[str, list[int]] = {}
    for e in events:
        assert e["event"]["pid"] == os.getpid()
        assert e["event"]["comm"] == Path(sys.executable).name[:15] or e["event"]["comm"]
        assert e["event"]["cookie"] == 0xFEED
        by_map.setdefault(e["map"], []).append(e["event"]["seq"])
    assert by_map == {"events": [0, 1, 2], "samples": [0, 1, 2]}


def test_trace_stops_after_its_duration_and_detaches(bpf_objs: dict[str, Path]) -> None:
    start = time.monotonic()
    proc = _trace(bpf_objs["trace"], "--duration", "1", "--set", f"target_tgid={os.getpid()}")
    try:
        said = _until_attached(proc)
        os.getppid()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert time.monotonic() - start < 20
    lines = out.splitlines()
    # no --type: each record is shown as its length and bytes
    assert len(lines) == 2 and all(" bytes " in line for line in lines)
    assert any(line.startswith("not attached: program 'not_traced'") for line in said)


def test_trace_refuses_what_it_cannot_do(bpf_objs: dict[str, Path]) -> None:
    proc = _trace(bpf_objs["trace"], "--type", "nope", "--count", "1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "--type nope: no struct or union of that name" in err
    proc = _trace(bpf_objs["trace"], "--btf", "/no/such.btf", "--count", "1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1  # checked at once, though this object has no CO-RE
    assert "kernel BTF /no/such.btf unavailable" in err
    proc = _trace(bpf_objs["globals"], "--count", "1")  # no SEC name says where to attach
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "no program has a SEC name" in err


def _bpftool_json(bpftool: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run([bpftool, "-j", *args], capture_output=True, text=True, check=True)
    found: list[dict[str, object]] = json.loads(out.stdout.strip() or "[]")  # "" when none
    return found


def _attached_programs(bpftool: str) -> list[str]:
    """Names of the programs that bpf links hold right now, machine-wide."""
    links = _bpftool_json(bpftool, "link", "show")
    progs = _bpftool_json(bpftool, "prog", "show")
    names = {p["id"]: p.get("name", "") for p in progs}
    return [names.get(link.get("prog_id"), "") for link in links]


def test_ctrl_c_stops_cleanly_and_leaves_nothing_attached(bpf_objs: dict[str, Path]) -> None:
    bpftool = shutil.which("bpftool")
    assert bpftool is not None
    proc = _trace(bpf_objs["trace"], "--type", "event", "--set", f"target_tgid={os.getpid()}")
    try:
        _until_attached(proc)
        assert "on_getppid" in _attached_programs(bpftool)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err
    assert "on_getppid" not in _attached_programs(bpftool)
