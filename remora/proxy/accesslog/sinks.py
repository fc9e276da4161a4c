"""Where formatted lines go: a file descriptor written in batches from the event loop.

Writing on every request would cost a syscall per request and, for a slow pipe, could stall the
loop. So lines are appended to an in-memory batch and written with one `os.write` on the next loop
iteration (or after `flush_interval`), when the batch grows past `FLUSH_BYTES`, and on close. A
reader that stops draining a pipe (non-blocking stdout) makes the batch wait, not the loop; past
`MAX_PENDING_BYTES` new lines are dropped and counted rather than growing memory without bound.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os

log = logging.getLogger(__name__)

FLUSH_BYTES = 64 * 1024
MAX_PENDING_BYTES = 8 * 1024 * 1024
_RETRY_DELAY = 0.02


class FdSink:
    """A batched writer on one file descriptor; owns (and closes) it when `owned` is true."""

    __slots__ = (
        "_blocked",
        "_closed",
        "_handle",
        "_pending",
        "_pending_bytes",
        "dropped_lines",
        "fd",
        "flush_interval",
        "name",
        "owned",
        "write_errors",
    )

    def __init__(self, fd: int, name: str, owned: bool, flush_interval: float = 0.0) -> None:
        self.fd = fd
        self.name = name
        self.owned = owned
        self.flush_interval = flush_interval
        self.dropped_lines = 0
        self.write_errors = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._closed = False
        # Set while the fd refuses data (full pipe): flushing again before the retry is pointless.
        self._blocked = False

    @classmethod
    def open_file(cls, path: str, flush_interval: float = 0.0) -> FdSink:
        """Open `path` once for appending; raises OSError for the caller to report."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return cls(os.open(path, flags, 0o644), path, owned=True, flush_interval=flush_interval)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def write(self, line: str) -> None:
        if self._closed:
            self.dropped_lines += 1
            return
        data = line.encode("utf-8", "backslashreplace")
        if self._pending_bytes + len(data) > MAX_PENDING_BYTES:
            self.dropped_lines += 1
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES and not self._blocked:
            self.flush()
        elif self._handle is None:
            self._schedule(self.flush_interval)

    def _schedule(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No loop (a CLI check, a test): there is nothing to stall, so write now.
            self.flush()
            return
        if delay > 0:
            self._handle = loop.call_later(delay, self._on_timer)
        else:
            self._handle = loop.call_soon(self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        self._blocked = False
        self.flush()

    def flush(self) -> None:
        """Write what is pending; a full pipe keeps the rest for a retry shortly after."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                self._on_error(exc, view.tobytes().count(b"\n"))
                return
            view = view[written:]
        if view:
            self._blocked = True
            rest = view.tobytes()
            self._pending.append(rest)
            self._pending_bytes = len(rest)
            if self._handle is None and not self._closed:
                self._schedule(_RETRY_DELAY)

    def _on_error(self, exc: OSError, lines: int) -> None:
        self.write_errors += 1
        self.dropped_lines += max(lines, 1)
        if self.write_errors == 1 or exc.errno not in (errno.EPIPE, errno.ENOSPC):
            log.warning("access log %s: write failed: %s", self.name, exc.strerror)

    def close(self) -> None:
        if self._closed:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._closed = True
        self.flush()
        if self._pending:
            self.dropped_lines += b"".join(self._pending).count(b"\n")
            self._pending.clear()
            self._pending_bytes = 0
        if self.owned:
            os.close(self.fd)
