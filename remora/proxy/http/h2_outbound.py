"""One HTTP/2 stream's outgoing DATA that the peer's windows hold back, and the end behind it.

Both sides keep one per stream: a response stream to a client (`h2_stream`) and a request
stream to an upstream (`upstream/h2_upstream_stream`). Each decides for itself what backlog
makes it unwritable and what its end is; the queue keeps the order of bytes and end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from remora.proxy.http.h1_codec import Headers


class Outbound:
    __slots__ = ("_chunks", "_end_held", "pending_bytes", "trailers")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self.pending_bytes = 0
        self._end_held = False
        self.trailers: Headers | None = None  # those of the held end

    @property
    def end_held(self) -> bool:
        return self._end_held

    def send(self, data: bytes, send: Callable[[bytes], int]) -> None:
        """Send `data` now as far as `send` takes it (it returns what went out), after what
        already waits; keep the rest."""
        if not self._chunks:
            sent = send(data)
            if sent >= len(data):
                return
            data = data[sent:]
        self._chunks.append(data)
        self.pending_bytes += len(data)

    def hold_end(self, trailers: Headers | None) -> bool:
        """Whether the end must wait behind queued data (it is kept, with its trailers)."""
        if not self._chunks:
            return False
        self._end_held = True
        self.trailers = trailers
        return True

    def flush(self, send: Callable[[bytes], int]) -> bool:
        """A window opened: send what waits as far as it allows. True when the held end is
        due now (the caller sends it, with `trailers`)."""
        chunks = self._chunks
        while chunks:
            chunk = chunks[0]
            sent = send(chunk)
            if not chunks:
                return False  # the stream failed and was cleared while sending
            self.pending_bytes -= sent
            if sent < len(chunk):
                chunks[0] = chunk[sent:]
                return False
            chunks.popleft()
        if self._end_held:
            self._end_held = False
            return True
        return False

    def clear(self) -> None:
        self._chunks.clear()
        self.pending_bytes = 0
        self._end_held = False
