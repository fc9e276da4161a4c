"""The I/O around `protocol`: the parent serving its successor, and the child taking over.

The child's side runs during start-up, before anything is served, so it uses a blocking socket
with a timeout: each step waits on the parent's answer and there is nothing else to do meanwhile.
The parent's side runs while it serves traffic, so it is driven by the event loop's readiness
callbacks. Its replies are small except one stats snapshot, and the child reads each reply as
soon as it asked for it, so a send with a timeout never holds the loop for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from remora.proxy.stats import Store

from .merge import CounterImport, snapshot
from .protocol import (
    VERSION,
    Decoder,
    Draining,
    DrainRequest,
    Hello,
    Message,
    ProtocolError,
    SocketReply,
    SocketRequest,
    Stats,
    StatsRequest,
    display_name,
    encode,
    socket_name,
)

log = logging.getLogger("remora.hot_restart")
M = TypeVar("M", bound=Message)

_STEP_TIMEOUT = 10.0  # one answer from the other epoch; it is a local process, not a network
_DRAIN_STATS_INTERVAL = 2.0


class HotRestartError(Exception):
    """A hot restart that cannot happen; the message is the one line the operator sees."""


# -- the parent: serves one successor -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParentHooks:
    """What the parent needs from the server it belongs to, kept as callables so this module
    does not import the server (which imports it)."""

    listening_fd: Callable[[str, int], int | None]
    stop_accepting: Callable[[], Awaitable[int]]  # returns the connections still open
    begin_drain: Callable[[float], None]  # the time the open connections get
    store: Store


_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return int(uid)


def trusted_peer(sock: socket.socket) -> bool:
    """An abstract socket name is open to every process in the network namespace: only this
    user (or root) may take listening sockets over or order a drain."""
    return peer_uid(sock) in (os.geteuid(), 0)


class HotRestartParent:
    """Claims this epoch's name at start-up and, once live, hands over to the next epoch."""

    def __init__(self, base_id: int, epoch: int, first_started_at: float) -> None:
        self.base_id = base_id
        self.epoch = epoch
        self.first_started_at = first_started_at
        self.name = socket_name(base_id, epoch)
        self._listener: socket.socket | None = None
        self._child: socket.socket | None = None
        self._decoder = Decoder()
        self._hooks: ParentHooks | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.handed_over = False

    def bind(self) -> None:
        """Take the name before anything else starts, so two processes that would claim the
        same epoch find out before either touches a socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self.name)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise HotRestartError(
                    f"{display_name(self.name)} is in use: a remora proxy already runs at "
                    f"--restart-epoch {self.epoch} with --base-id {self.base_id}; pass the next "
                    "epoch to take over from it, or another --base-id to run beside it"
                ) from None
            raise
        self._listener = sock

    def listen(self, hooks: ParentHooks) -> None:
        """Accept a successor from now on: the server is live and its sockets can be shared."""
        assert self._listener is not None, "bind() first"
        self._hooks = hooks
        self._listener.listen(1)
        self._listener.setblocking(False)
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)
        log.debug("hot restart: epoch %d listens on %s", self.epoch, display_name(self.name))

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        if not trusted_peer(conn):
            log.warning(
                "hot restart: refused a connection from uid %d (only uid %d or root may take "
                "over)", peer_uid(conn), os.geteuid(),
            )  # fmt: skip
            conn.close()
            return
        if self._child is not None:  # one successor at a time; a second one is told no by EOF
            log.warning("hot restart: a second successor connected during a handover; refused")
            conn.close()
            return
        conn.settimeout(_STEP_TIMEOUT)
        self._child = conn
        self._decoder = Decoder()
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable)

    def _readable(self) -> None:
        conn = self._child
        assert conn is not None
        try:
            data = conn.recv(65536)
            messages = self._decoder.feed(data) if data else []
        except (OSError, ProtocolError) as exc:
            log.warning("hot restart: the successor's connection failed: %s", exc)
            data, messages = b"", []
        if not data:
            self._forget_child()
            return
        for message in messages:
            try:
                self._handle(conn, message)
            except OSError as exc:
                log.warning("hot restart: answering the successor failed: %s", exc)
                self._forget_child()
                return

    def _handle(self, conn: socket.socket, message: Message) -> None:
        hooks = self._hooks
        assert hooks is not None
        if isinstance(message, Hello):
            if message.version != VERSION or message.epoch != self.epoch + 1:
                log.warning(
                    "hot restart: a successor at epoch %d speaking version %d connected (this "
                    "is epoch %d, version %d); it will refuse to take over",
                    message.epoch, message.version, self.epoch, VERSION,
                )  # fmt: skip
            conn.sendall(encode(Hello(self.epoch, os.getpid(), VERSION, self.first_started_at)))
        elif isinstance(message, SocketRequest):
            fd = hooks.listening_fd(message.host, message.port)
            reply = encode(SocketReply(message.host, message.port, fd is not None))
            if fd is None:
                conn.sendall(reply)
            else:
                socket.send_fds(conn, [reply], [fd])
        elif isinstance(message, StatsRequest):
            conn.sendall(encode(Stats(snapshot(hooks.store))))
        elif isinstance(message, DrainRequest):
            self._spawn(self._drain(conn, message))
        else:
            raise OSError(errno.EPROTO, f"unexpected {message.type} from the successor")

    async def _drain(self, conn: socket.socket, request: DrainRequest) -> None:
        hooks = self._hooks
        assert hooks is not None
        open_connections = await hooks.stop_accepting()
        self.handed_over = True
        self._close_listener()  # there is no second successor: the next one talks to the child
        conn.sendall(encode(Draining(open_connections)))
        timeout = min(request.drain_time_s, request.parent_shutdown_time_s)
        log.info(
            "hot restart: epoch %d took over; stopped accepting, draining %d connection%s "
            "for up to %g s",
            self.epoch + 1, open_connections, "" if open_connections == 1 else "s", timeout,
        )  # fmt: skip
        hooks.begin_drain(timeout)
        while self._child is conn:  # keep the successor's counters current while draining
            await asyncio.sleep(_DRAIN_STATS_INTERVAL)
            if self._child is conn:
                with contextlib.suppress(OSError):
                    conn.sendall(encode(Stats(snapshot(hooks.store))))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except OSError as exc:
                log.warning("hot restart: the handover failed: %s", exc)

        task = asyncio.create_task(run(), name="hot-restart")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget_child(self) -> None:
        conn, self._child = self._child, None
        if conn is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
        if not self.handed_over:
            log.info("hot restart: the successor left before the handover; serving on")

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    async def close(self) -> None:
        """Send the final counters (the drain is over) and let go of the name."""
        conn = self._child
        if conn is not None and self._hooks is not None:
            with contextlib.suppress(OSError):
                conn.sendall(encode(Stats(snapshot(self._hooks.store), final=True)))
        self._forget_child()
        self._close_listener()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- the child: takes over from epoch - 1 -------------------------------------------------------
class HotRestartChild:
    """The conversation with the parent, from connect to the parent's last counters."""

    def __init__(self, base_id: int, epoch: int) -> None:
        assert epoch > 0
        self.base_id = base_id
        self.epoch = epoch
        self.name = socket_name(base_id, epoch - 1)
        self._sock: socket.socket | None = None
        self._decoder = Decoder()
        self._messages: list[Message] = []
        self._fds: list[int] = []
        self._counters: CounterImport | None = None
        self.parent_pid = 0
        self.first_started_at = 0.0
        self.taken = 0

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(_STEP_TIMEOUT)
        try:
            sock.connect(self.name)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                raise HotRestartError(
                    f"--restart-epoch {self.epoch}: no remora proxy runs at epoch "
                    f"{self.epoch - 1} with --base-id {self.base_id} (nothing listens on "
                    f"{display_name(self.name)}); the first process runs at epoch 0, and each "
                    "hot restart passes the running epoch + 1"
                ) from None
            raise HotRestartError(f"cannot reach {display_name(self.name)}: {exc}") from None
        if not trusted_peer(sock):
            uid = peer_uid(sock)
            sock.close()
            raise HotRestartError(
                f"{display_name(self.name)} is held by uid {uid}, not by this user: refusing "
                "to take sockets from it"
            )
        self._sock = sock
        self._send(Hello(self.epoch, os.getpid()))
        hello = self._expect(Hello)
        if hello.version != VERSION or hello.epoch != self.epoch - 1:
            raise HotRestartError(
                f"{display_name(self.name)} answered as epoch {hello.epoch} speaking hot "
                f"restart version {hello.version}; this is epoch {self.epoch}, version {VERSION}"
            )
        self.parent_pid = hello.pid
        self.first_started_at = hello.first_started_at

    def import_stats(self, store: Store) -> int:
        """Start this process's counters from the parent's; returns the sum added."""
        self._counters = CounterImport(store)
        self._send(StatsRequest())
        return self._counters.apply(self._expect(Stats).counters)

    def take(self, host: str, port: int) -> socket.socket | None:
        """The parent's listening socket on host:port, or None (the child binds it itself)."""
        if port == 0 or self._sock is None:  # "any port" names no particular socket to share
            return None
        self._send(SocketRequest(host, port))
        reply = self._expect(SocketReply)
        if not reply.found:
            return None
        if not self._fds:
            raise HotRestartError(
                f"epoch {self.epoch - 1} said it sent {host}:{port} but no descriptor came"
            )
        self.taken += 1
        return socket.socket(fileno=self._fds.pop(0))

    def drain_parent(self, drain_time_s: float, parent_shutdown_time_s: float) -> Draining:
        """Tell the parent to stop accepting; returns once it has (this process is live)."""
        self._send(DrainRequest(drain_time_s, parent_shutdown_time_s))
        return self._expect(Draining)

    def follow(self, done: Callable[[], None]) -> None:
        """Keep adding the parent's counters as it drains, until its final message or exit."""
        sock = self._sock
        assert sock is not None
        sock.setblocking(False)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = sock.recv(1 << 20)
                messages = self._decoder.feed(data) if data else []
            except BlockingIOError:
                return
            except (OSError, ProtocolError):
                data, messages = b"", []
            final = not data
            for message in messages:
                if isinstance(message, Stats) and self._counters is not None:
                    self._counters.apply(message.counters)
                    final = final or message.final
            if final:
                loop.remove_reader(sock.fileno())
                self.close()
                done()

        loop.add_reader(sock.fileno(), readable)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    # -- blocking steps ------------------------------------------------------------------
    def _send(self, message: Message) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(encode(message))
        except OSError as exc:
            raise HotRestartError(
                f"epoch {self.epoch - 1} went away during the handover: {exc}"
            ) from None

    def _expect(self, kind: type[M]) -> M:
        while not self._messages:
            self._receive()
        message = self._messages.pop(0)
        if not isinstance(message, kind):
            raise HotRestartError(
                f"epoch {self.epoch - 1} answered {message.type} where {kind.type} was due"
            )
        return message

    def _receive(self) -> None:
        assert self._sock is not None
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._sock, 1 << 20, 8)
        except TimeoutError:
            raise HotRestartError(
                f"epoch {self.epoch - 1} did not answer within {_STEP_TIMEOUT:g} s"
            ) from None
        except OSError as exc:
            raise HotRestartError(f"epoch {self.epoch - 1}: {exc}") from None
        self._fds.extend(fds)
        if not data:
            raise HotRestartError(f"epoch {self.epoch - 1} closed the connection mid-handover")
        try:
            self._messages.extend(self._decoder.feed(data))
        except ProtocolError as exc:
            raise HotRestartError(f"epoch {self.epoch - 1}: {exc}") from None


def process_age() -> float:
    """Seconds since this process was created (the kernel's start time, not Python's)."""
    with open("/proc/self/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started
