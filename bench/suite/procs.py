"""Start pinned processes and read what they cost from /proc.

A peer may be several processes (nginx runs a master and a worker), so every reading sums over the
process tree rooted at the pid we started. CPU time is utime + stime from /proc/PID/stat, which
covers all threads of a process (Go's runtime threads, the Python proxy's connection threads).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcessError(Exception):
    """A benchmark process failed to start or died; carries the tail of its log."""


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    # After the comm field: state is fields[0], so utime (field 14) is fields[11].
    return int(fields[11]) + int(fields[12])


@dataclass
class Usage:
    """A reading of a process tree: CPU seconds so far, current and peak resident memory."""

    cpu_s: float
    rss_kib: int
    hwm_kib: int


class Proc(Protocol):
    """What the runner, the loads and the probe need of a peer: one process or several."""

    @property
    def name(self) -> str: ...

    def alive(self) -> bool: ...

    def log_tail(self, lines: int = 15) -> str: ...

    def check_alive(self) -> None: ...

    def usage(self) -> Usage: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class Managed:
    """A process started under `taskset`, logged to a file, stopped with SIGTERM then SIGKILL.

    stdout and stderr both go to `log`, unless `stdout` names a file of its own (HAProxy writes
    its access log to stdout)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        cpu: int | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        command = list(argv)
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
        self.argv = command
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with log.open("wb") as out, (stdout or log).open("ab") as separate:
            self.proc = subprocess.Popen(
                command,
                stdout=separate if stdout is not None else out,
                stderr=out if stdout is not None else subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            raise ProcessError(
                f"{self.name} exited with status {self.proc.returncode}: {' '.join(self.argv)}\n"
                f"{self.log_tail()}"
            )

    def usage(self) -> Usage:
        pids = tree(self.pid)
        return Usage(
            cpu_s=sum(_cpu_ticks(p) for p in pids) / _CLK_TCK,
            rss_kib=sum(_status_kib(p, "VmRSS") for p in pids),
            hwm_kib=sum(_status_kib(p, "VmHWM") for p in pids),
        )

    def stop(self, timeout: float = 5.0) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.05)
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.proc.wait(timeout=timeout)


class ProcGroup:
    """Several processes measured as one peer (two proxies in series): CPU and memory are summed,
    and the group is down when any member is."""

    def __init__(self, name: str, members: Sequence[Managed]) -> None:
        self._name = name
        self.members = list(members)

    @property
    def name(self) -> str:
        return self._name

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(f"[{m.name}]\n{m.log_tail(lines)}" for m in self.members)

    def check_alive(self) -> None:
        for member in self.members:
            member.check_alive()

    def usage(self) -> Usage:
        readings = [m.usage() for m in self.members]
        return Usage(
            cpu_s=sum(u.cpu_s for u in readings),
            rss_kib=sum(u.rss_kib for u in readings),
            hwm_kib=sum(u.hwm_kib for u in readings),
        )

    def stop(self, timeout: float = 5.0) -> None:
        for member in self.members:
            member.stop(timeout)
