"""`remora proxy --concurrency N`: N worker processes sharing the listeners, one admin for all.

Python threads share one interpreter lock, so where Envoy runs worker threads remora runs
worker processes. The supervisor (the process the user started) reserves every listener's
port first, with a socket bound under SO_REUSEPORT that never listens: a port 0 is chosen once,
and a port already taken fails before any worker starts. It then forks the workers; each binds
its own SO_REUSEPORT socket on every listener's port and runs a whole proxy, and the kernel
spreads new connections across them. The supervisor serves the admin: stats summed across the
workers (`worker_snapshot.py`), health switches and /quitquitquit sent to all of them.

Signals are forwarded: SIGTERM and SIGINT drain every worker, SIGHUP reloads each (each reads
the file itself). A worker that exits unexpectedly takes the rest down and the supervisor exits
1, so whatever supervises remora restarts the whole proxy, as it would a crashed Envoy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from remora.config.common import SocketAddress
from remora.config.compile import ProxyConfig
from remora.proxy.admin.context import CertificateStatus, ClusterStatus, ListenerStatus
from remora.proxy.certificates import certificate_statuses
from remora.proxy.stats import Store
from remora.proxy.worker_snapshot import (
    listeners,
    merged_clusters,
    merged_store,
    stats_snapshot,
    take,
)

log = logging.getLogger("remora.workers")

_LENGTH = struct.Struct("!Q")
_QUERY_TIMEOUT = 5.0  # a worker busy for longer than this is left out of one admin answer
_START_TIMEOUT = 120.0


# -- the worker's side ------------------------------------------------------------------------
class WorkerLink:
    """The worker's end of its socketpair: says when it is up, answers the supervisor."""

    def __init__(self, index: int, sock: socket.socket, pinned: dict[str, int]) -> None:
        self.index = index
        self.sock = sock
        self.pinned = pinned

    def pin(self, config: ProxyConfig) -> ProxyConfig:
        """The worker's view of a bootstrap: the supervisor's listener ports, its own admin."""
        return pin_ports(config, self.pinned, private_admin=True)

    def announce(self, message: str) -> None:
        self.sock.sendall(message.encode() + b"\n")

    def serve(self, loop: asyncio.AbstractEventLoop, context: Any) -> None:
        """Answer `snapshot`, `fail` and `ok` requests on the loop (`context` is the worker's
        AdminView)."""
        self.sock.setblocking(False)
        buffer = bytearray()

        def readable() -> None:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            if not data:  # the supervisor went away: nothing to answer any more
                loop.remove_reader(self.sock.fileno())
                return
            buffer.extend(data)
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                self._answer(line.decode(), context)

        loop.add_reader(self.sock.fileno(), readable)

    def _answer(self, line: str, context: Any) -> None:
        ident, _, command = line.partition(" ")
        answer: dict[str, Any]
        if command == "snapshot":
            answer = take(context)
        elif command == "stats":
            answer = stats_snapshot(context.stats)
        elif command in ("fail", "ok"):
            context.set_healthcheck_failed(command == "fail")
            answer = {}
        else:
            answer = {"error": f"unknown command {command!r}"}
        body = json.dumps({**answer, "id": ident}).encode()
        self.sock.setblocking(True)  # the supervisor reads at once; a short block is fine
        try:
            self.sock.sendall(_LENGTH.pack(len(body)) + body)
        finally:
            self.sock.setblocking(False)


def pin_ports(config: ProxyConfig, pinned: dict[str, int], private_admin: bool) -> ProxyConfig:
    listeners_ = tuple(
        dataclasses.replace(
            listener,
            address=SocketAddress(listener.address.host, pinned[listener.name]),
        )
        if listener.address.port == 0 and listener.name in pinned
        else listener
        for listener in config.listeners
    )
    admin = config.admin
    if private_admin and admin is not None:
        admin = None  # the supervisor serves it; the worker answers over its socketpair
    return dataclasses.replace(config, listeners=listeners_, admin=admin)


# -- the supervisor ---------------------------------------------------------------------------
@dataclasses.dataclass
class _Worker:
    index: int
    pid: int
    sock: socket.socket
    exit_code: int | None = None

    next_id: int = 0
    broken: bool = False

    def query(self, command: str) -> dict[str, Any] | None:
        """Ask and wait for this question's answer. Each carries its id: an answer that came
        too late for an earlier question is read and dropped, never taken for this one's."""
        self.next_id += 1
        ident = str(self.next_id)
        deadline = time.monotonic() + _QUERY_TIMEOUT
        try:
            self.sock.settimeout(_QUERY_TIMEOUT)
            self.sock.sendall(f"{ident} {command}\n".encode())
            while True:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                (length,) = _LENGTH.unpack(_read_exactly(self.sock, _LENGTH.size))
                answer: dict[str, Any] = json.loads(_read_exactly(self.sock, length))
                if answer.pop("id", None) == ident:
                    return answer
        except (OSError, ValueError) as exc:
            # A frame cut off part-way cannot be resynchronised: the channel is closed, and the
            # admin answers without this worker from now on (/ready says 503).
            log.error("worker %d did not answer %s (%s); its admin channel is closed",
                      self.index, command, exc)  # fmt: skip
            self.sock.close()
            self.broken = True
            return None


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the worker closed its channel")
        data.extend(chunk)
    return bytes(data)


class SupervisorView:
    """The admin's view of all workers (`AdminContext`): each read asks every worker."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def _snapshots(self, command: str = "snapshot") -> list[dict[str, Any]]:
        # One admin request reads several views: ask the workers once per request, not per view.
        at, snapshots = self._cache.get(command, (0.0, []))
        if time.monotonic() - at > 0.05 or not snapshots:
            snapshots = [
                s
                for w in self.supervisor.reachable_workers()
                if (s := w.query(command)) is not None
            ]
            self._cache[command] = (time.monotonic(), snapshots)
        return snapshots

    @property
    def stats(self) -> Store:
        # Only the stats: a scrape every few seconds must not have every worker serialize its
        # config dump and /clusters too.
        store = merged_store(self._snapshots("stats"))
        store.gauge("server.concurrency").set(len(self.supervisor.workers))
        return store

    def server_info(self) -> dict[str, Any]:
        snapshots = self._snapshots()
        info: dict[str, Any] = dict(snapshots[0]["server_info"]) if snapshots else {}
        info["pid"] = os.getpid()
        info["state"] = "LIVE" if self.is_ready() else info.get("state", "INITIALIZING")
        info.setdefault("command_line_options", {})["concurrency"] = len(self.supervisor.workers)
        info["workers"] = [{"index": w.index, "pid": w.pid} for w in self.supervisor.workers]
        return info

    def config_dump(self) -> dict[str, Any]:
        snapshots = self._snapshots()
        dump: dict[str, Any] = snapshots[0]["config_dump"] if snapshots else {"configs": []}
        return dump

    def clusters(self) -> list[ClusterStatus]:
        return merged_clusters(self._snapshots())

    def listeners(self) -> list[ListenerStatus]:
        snapshots = self._snapshots()
        return listeners(snapshots[0]) if snapshots else []

    def certificates(self) -> list[CertificateStatus]:
        # The bootstrap's: every worker compiled the same one (xDS-delivered contexts are each
        # worker's own, and /config_dump shows them).
        config = self.supervisor.config
        return certificate_statuses(list(config.listeners), config.clusters)

    def is_ready(self) -> bool:
        snapshots = self._snapshots()
        return len(snapshots) == len(self.supervisor.workers) and all(s["ready"] for s in snapshots)

    def set_healthcheck_failed(self, failed: bool) -> None:
        for worker in self.supervisor.reachable_workers():
            worker.query("fail" if failed else "ok")
        self._cache.clear()

    def request_shutdown(self) -> None:
        self.supervisor.request_shutdown("/quitquitquit")


class Supervisor:
    def __init__(
        self, config: ProxyConfig, workers: list[_Worker], pending: list[signal.Signals]
    ) -> None:
        self.config = config
        self.workers = workers
        self._pending = pending
        self._stopping = False
        self._done = asyncio.Event()
        self.failed = False

    def live_workers(self) -> list[_Worker]:
        return [w for w in self.workers if w.exit_code is None]

    def reachable_workers(self) -> list[_Worker]:
        return [w for w in self.live_workers() if not w.broken]

    def request_shutdown(self, reason: str) -> None:
        if not self._stopping:
            log.info("%s: draining %d workers", reason, len(self.live_workers()))
        self._stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals) -> None:
        for worker in self.live_workers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, sig)

    def _exited(self, worker: _Worker, fd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        os.close(fd)
        _pid, status = os.waitpid(worker.pid, 0)
        worker.exit_code = os.waitstatus_to_exitcode(status)
        if not self._stopping:
            log.error(
                "worker %d (pid %d) exited with %s; stopping the others",
                worker.index, worker.pid, worker.exit_code,
            )  # fmt: skip
            self.failed = True
            self.request_shutdown("worker exit")
        elif worker.exit_code != 0:
            self.failed = True
        if not self.live_workers():
            self._done.set()

    async def run(self) -> None:
        from remora.proxy.admin.server import AdminServer

        loop = asyncio.get_running_loop()
        for worker in self.workers:
            fd = os.pidfd_open(worker.pid)
            loop.add_reader(fd, self._exited, worker, fd)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._signal_all, signal.SIGHUP)
        for sig in self._pending:
            if sig is signal.SIGHUP:
                self._signal_all(sig)
            else:
                self.request_shutdown(sig.name)
        admin = None
        if self.config.admin is not None:
            admin = AdminServer(
                SupervisorView(self), self.config.admin.host, self.config.admin.port
            )
            try:
                await admin.start()
            except OSError as exc:
                log.error("admin cannot bind %s: %s", self.config.admin, exc.strerror or exc)
                self.failed = True
                self.request_shutdown("admin bind failure")
                admin = None
            else:
                log.info("admin on %s:%s (%d workers)", self.config.admin.host, admin.port,
                         len(self.workers))  # fmt: skip
        try:
            await self._done.wait()
        finally:
            if admin is not None:
                await admin.close()


def _reserve(config: ProxyConfig) -> tuple[list[socket.socket], dict[str, int]]:
    """Hold each listener's port (bound, SO_REUSEPORT, not listening) and learn port 0's."""
    held: list[socket.socket] = []
    pinned: dict[str, int] = {}
    try:
        for listener in config.listeners:
            address = listener.address
            family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind((address.host, address.port))
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"listener {listener.name!r} cannot bind {address}: {exc.strerror or exc}",
                ) from None
            pinned[listener.name] = int(sock.getsockname()[1])
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, pinned


def run_workers(
    config: ProxyConfig,
    concurrency: int,
    run_worker: Callable[[ProxyConfig, WorkerLink], int],
) -> int:
    """Fork `concurrency` workers running `run_worker`, then supervise them until they exit."""
    import uvloop

    try:
        held, pinned = _reserve(config)
    except OSError as exc:
        print(f"error: {exc.strerror}", file=sys.stderr)
        return 1
    workers: list[_Worker] = []
    supervisor = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    for index in range(concurrency):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with(supervisor)
                ours.close()
                for sock in held:
                    sock.close()
                for worker in workers:
                    worker.sock.close()
                link = WorkerLink(index, theirs, pinned)
                code = run_worker(link.pin(config), link)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        theirs.close()
        workers.append(_Worker(index, pid, ours))
    # Until the supervisor's loop takes them over, signals are kept (a supervisor of remora may
    # signal as soon as a worker's port answers, before this process is ready to forward).
    pending: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: pending.append(signal.Signals(number)))
    if not _wait_up(workers):
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        for worker in workers:
            os.waitpid(worker.pid, 0)
        return 1
    log.info("%d workers up (pids %s)", len(workers), ", ".join(str(w.pid) for w in workers))
    running = Supervisor(config, workers, pending)
    try:
        uvloop.run(running.run())
    except KeyboardInterrupt:
        pass
    finally:
        for sock in held:
            sock.close()
    return 1 if running.failed else 0


def _die_with(supervisor: int) -> None:
    """A worker whose supervisor is gone (killed, not asked to drain) must not serve on beside
    the next remora: the kernel sends it SIGTERM when its parent dies, so it drains and exits."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _wait_up(workers: list[_Worker]) -> bool:
    """Every worker says `up` once its listeners accept, or `error` and exits."""
    ok = True
    for worker in workers:
        worker.sock.settimeout(_START_TIMEOUT)
        try:
            line = worker.sock.makefile("rb").readline().decode().strip()
        except OSError as exc:
            line = f"error: {exc}"
        if line != "up":
            ok = False
            if line:
                log.error("worker %d: %s", worker.index, line)
    return ok
