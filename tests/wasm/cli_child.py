"""Runs `remora wasm ...` in a child process with bounded memory and time.

A panic inside wasmtime aborts the process it happens in, so tests that feed hostile modules to
the CLI must not run it in the test process: the child's death is then a result to check (its
signal, its stderr) instead of the end of the test run.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

# Address space, not RSS: wasmtime reserves 4 GiB + guard per linear memory with PROT_NONE, so
# an RLIMIT_AS would refuse ordinary modules. RSS is sampled from /proc while the child runs.
DEFAULT_MAX_RSS = 512 << 20
DEFAULT_WALL = 20.0
_POLL = 0.01


@dataclass(frozen=True)
class ChildResult:
    argv: tuple[str, ...]
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    peak_rss: int
    wall: float
    killed_for: str | None  # "rss" or "time" when this harness had to kill it

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        return signal.Signals(-self.returncode).name


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def run_cli(
    argv: Sequence[str], max_rss: int = DEFAULT_MAX_RSS, wall: float = DEFAULT_WALL
) -> ChildResult:
    """`python -m remora ARGV` (the installed entry's code path), watched for RSS and time.

    The peak is the kernel's own (`wait4`'s ru_maxrss) once the child is gone, unless that is
    no more than this process's own peak: Linux carries the forking process's high-water mark
    across exec, so late in a long test run a small child would report the runner's size. Then
    the highest /proc sample stands in. The sampling also kills a child that is running away
    before it takes the machine with it.
    """
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampled = 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMORA_TRACEBACK")}
    env["RUST_BACKTRACE"] = "0"
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remora", *argv],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        killed_for: str | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss(proc.pid)
            sampled = max(sampled, rss)
            if rss > max_rss:
                killed_for = "rss"
            elif time.monotonic() - start > wall:
                killed_for = "time"
            if killed_for:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(_POLL)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(
            tuple(argv),
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_maxrss * 1024 if usage.ru_maxrss * 1024 > inherited else sampled,
            time.monotonic() - start,
            killed_for,
        )
