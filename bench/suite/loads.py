"""How a scenario puts load on a peer, and what it reads back.

Three kinds, each a small class so that a scenario is just data:
- `ClosedLoop`: wrk, N connections each sending its next request when the last one returned.
  Gives peak throughput; its latency is only what a saturated closed loop sees.
- `OpenLoop`: bench/loadgen/openloop.c at a fixed rate, latency corrected for coordinated
  omission. This is what "P99 at 10K RPS" means.
- `IdleConnections`: open many keep-alive connections, one request each, then hold them idle
  and read the peer's resident memory growth per connection.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from suite.procs import Proc

BENCH_DIR = Path(__file__).resolve().parents[1]
WRK_SCRIPT = BENCH_DIR / "loadgen" / "wrk_report.lua"
OPENLOOP_SOURCE = BENCH_DIR / "loadgen" / "openloop.c"


class LoadError(Exception):
    """The load tool failed or its output could not be read."""


@dataclass(frozen=True)
class Target:
    """A running peer under test and the tools pointed at it."""

    host: str
    port: int
    proc: Proc
    load_cpu: int | None
    wrk: str
    openloop: str
    tls: bool = False  # HTTPS (wrk only: the open-loop generator speaks plaintext)


Metrics = dict[str, Any]


def _pinned(argv: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def _run_tool(argv: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{argv[0]} did not finish in {timeout:.0f}s: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise LoadError(
            f"{' '.join(argv)} exited {done.returncode}: {(done.stderr or done.stdout)[-800:]}"
        )
    return done.stdout


class Load(ABC):
    #: Metric keys this load produces that the report shows, in order.
    metrics: tuple[str, ...]

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def run(self, target: Target, duration: float) -> Metrics: ...

    @abstractmethod
    def smoke(self) -> Load:
        """A scaled-down copy for --smoke."""

    @property
    @abstractmethod
    def peak_connections(self) -> int:
        """Client connections this load holds open at once."""

    def requests_of(self, metrics: Metrics) -> int:
        return int(metrics.get("requests", 0))


@dataclass(frozen=True)
class ClosedLoop(Load):
    connections: int
    path: str
    close: bool = False  # send `Connection: close`: one TCP connection per request
    metrics = ("rps", "mib_s", "p50_us", "p99_us", "p999_us", "errors")

    @property
    def peak_connections(self) -> int:
        return self.connections

    def describe(self) -> str:
        conn = ", new connection per request" if self.close else ", keep-alive"
        return f"wrk closed loop, {self.connections} connections, GET {self.path}{conn}"

    def command(self, target: Target, duration: float) -> list[str]:
        seconds = max(1, round(duration))  # wrk takes whole seconds
        argv = [
            target.wrk,
            "-t1",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
        ]
        if self.close:
            argv += ["-H", "Connection: close"]
        scheme = "https" if target.tls else "http"
        url = f"{scheme}://{target.host}:{target.port}{self.path}"
        return _pinned([*argv, url], target.load_cpu)

    def run(self, target: Target, duration: float) -> Metrics:
        argv = self.command(target, duration)
        out = _run_tool(argv, timeout=duration + 30)
        for line in out.splitlines():
            if line.startswith("BENCH_JSON "):
                raw = json.loads(line.removeprefix("BENCH_JSON "))
                break
        else:
            raise LoadError(f"no BENCH_JSON line from wrk: {out[-500:]}")
        seconds = raw["duration_us"] / 1e6
        lat = raw["latency_us"]
        return {
            "requests": raw["requests"],
            "rps": raw["requests"] / seconds,
            "mib_s": raw["bytes"] / seconds / 2**20,
            "p50_us": lat["p50"],
            "p99_us": lat["p99"],
            "p999_us": lat["p999"],
            "errors": sum(raw["errors"].values()),
            "error_detail": raw["errors"],
            "command": " ".join(argv),
        }

    def smoke(self) -> Load:
        return replace(self, connections=min(self.connections, 8))


@dataclass(frozen=True)
class OpenLoop(Load):
    rate: int
    connections: int
    path: str
    metrics = ("rps", "p50_us", "p99_us", "p999_us", "uncorrected_p99_us", "errors")

    @property
    def peak_connections(self) -> int:
        return self.connections

    def describe(self) -> str:
        return (
            f"open loop at {self.rate:,} req/s over {self.connections} keep-alive connections, "
            f"GET {self.path}, latency from intended send time (coordinated omission corrected)"
        )

    def command(self, target: Target, duration: float) -> list[str]:
        argv = [
            target.openloop,
            "-a",
            target.host,
            "-p",
            str(target.port),
            "-u",
            self.path,
            "-r",
            str(self.rate),
            "-c",
            str(self.connections),
            "-d",
            f"{duration:g}",
            "-g",
            "5",
        ]
        return _pinned(argv, target.load_cpu)

    def run(self, target: Target, duration: float) -> Metrics:
        argv = self.command(target, duration)
        raw = json.loads(_run_tool(argv, timeout=duration + 30))
        lat = raw["latency_us"]
        return {
            "requests": raw["completed"],
            "rps": raw["achieved_rps"],
            "target_rps": self.rate,
            "p50_us": lat["p50"],
            "p99_us": lat["p99"],
            "p999_us": lat["p999"],
            "errors": raw["errors"] + raw["timeouts"] + raw["non2xx"],
            "uncorrected_p99_us": raw["uncorrected_us"]["p99"],
            "send_lag_p99_us": raw["send_lag_us"]["p99"],
            "command": " ".join(argv),
        }

    def smoke(self) -> Load:
        return replace(self, rate=min(self.rate, 500), connections=min(self.connections, 8))


def _recv_response(sock: socket.socket) -> bool:
    """Read one Content-Length response; False if the peer closed or answered non-2xx."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 2")


@dataclass(frozen=True)
class IdleConnections(Load):
    count: int
    path: str
    batch: int = 500
    verify: int = 100  # connections that must still serve a request after the reading
    metrics = ("connections", "kib_per_conn", "rss_idle_mib", "errors")

    @property
    def peak_connections(self) -> int:
        return self.count

    def describe(self) -> str:
        return (
            f"{self.count:,} connections opened and held idle (no request); memory per "
            f"connection = growth of the proxy's RSS / connections; then {self.verify} of them "
            f"must still serve GET {self.path}"
        )

    def _open(self, target: Target) -> socket.socket:
        sock = socket.create_connection((target.host, target.port), timeout=30)
        # RST on close: 10k sockets in TIME_WAIT would starve the next peer of ports.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return sock

    def run(self, target: Target, duration: float) -> Metrics:
        time.sleep(0.1)
        before = target.proc.usage()
        socks: list[socket.socket] = []
        started = time.monotonic()
        try:
            for _ in range(self.count):
                socks.append(self._open(target))
                if len(socks) % self.batch == 0:
                    time.sleep(0.01)  # let the proxy drain its accept queue
            setup_s = time.monotonic() - started
            time.sleep(min(max(duration, 0.3), 3.0))  # let accepts finish and allocations settle
            target.proc.check_alive()
            after = target.proc.usage()
            failed = self._verify(target, socks)
        finally:
            for sock in socks:
                sock.close()
        grown_kib = max(0, after.rss_kib - before.rss_kib)
        return {
            "connections": len(socks),
            "requests": 0,
            "errors": failed,
            "kib_per_conn": grown_kib / max(1, len(socks)),
            "rss_idle_mib": after.rss_kib / 1024,
            "rss_before_mib": before.rss_kib / 1024,
            "setup_s": setup_s,
            "command": f"(built in) {self.describe()}",
        }

    def _verify(self, target: Target, socks: list[socket.socket]) -> int:
        """Prove the connections were really accepted and served, not left in a backlog."""
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n\r\n"
        ).encode()
        step = max(1, len(socks) // max(1, self.verify))
        failed = 0
        for sock in socks[::step][: self.verify]:
            try:
                sock.sendall(request)
                if not _recv_response(sock):
                    failed += 1
            except OSError:
                failed += 1
        return failed

    def smoke(self) -> Load:
        return replace(self, count=min(self.count, 200), verify=10)

    def fit(self, fd_limit: int) -> IdleConnections:
        """The same load with a count this process can open (one fd per connection)."""
        room = fd_limit - 512
        return self if self.count <= room else replace(self, count=max(1, room))


def connection_limit(load: Load) -> int:
    """The connection limit peers get for `load`: both sides of every client connection, with
    room to spare."""
    return 2 * load.peak_connections + 1024


def needed_nofile(loads: list[Load]) -> int:
    """File descriptors the runner and the peers it starts must be able to open."""
    most = max((connection_limit(load) for load in loads), default=0)
    return max(65536, math.ceil(most * 2.5))
