"""A request body on its way upstream: buffered until the upstream is ready, then passed through.

Bytes arrive from the downstream parser whether or not an upstream connection exists yet (it may
still be connecting, or the request may be queued behind a pipelined one). The pipe holds them, and
asks its source to stop reading once `limit` bytes wait, so a fast client cannot grow the proxy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class BodyPipe:
    __slots__ = (
        "_chunks",
        "_on_backlog",
        "backlogged",
        "buffered",
        "complete",
        "limit",
        "on_end",
        "sink",
        "total",
    )

    def __init__(self, limit: int, on_backlog: Callable[[bool], None]) -> None:
        self._chunks: deque[bytes] | None = None  # made when bytes must wait (most never do)
        self._on_backlog = on_backlog
        self.buffered = 0
        self.backlogged = False  # whether this pipe holds one of its source's read blocks
        self.total = 0
        self.limit = limit
        self.complete = False
        self.sink: Callable[[bytes], None] | None = None
        self.on_end: Callable[[], None] | None = None

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self.sink is not None:
            self.sink(data)
            return
        if self._chunks is None:
            self._chunks = deque()
        self._chunks.append(data)
        self.buffered += len(data)
        if self.buffered > self.limit and not self.backlogged:
            self.backlogged = True
            self._on_backlog(True)

    def finish(self) -> None:
        self.complete = True
        if self.sink is not None and self.on_end is not None:
            self.on_end()

    def attach(self, sink: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        """Start passing bytes to `sink`; buffered bytes are flushed first, in order."""
        chunks = self._chunks
        while chunks:
            sink(chunks.popleft())
        self.buffered = 0
        self.sink = sink
        self.on_end = on_end
        self._release_backlog()
        if self.complete:
            on_end()

    def detach(self) -> None:
        self.sink = None
        self.on_end = None
        if self._chunks is not None:
            self._chunks.clear()
        self.buffered = 0
        self._release_backlog()

    def _release_backlog(self) -> None:
        if self.backlogged:
            self.backlogged = False
            self._on_backlog(False)
