"""A downstream request as parsed: its head, framing, and the pipe its body flows through."""

from __future__ import annotations

import time
from collections.abc import Callable

from remora.proxy.http.body import BodyPipe
from remora.proxy.http.h1_codec import Headers


class Request:
    __slots__ = (
        "_buffer_limit",
        "_on_backlog",
        "body",
        "chunked",
        "complete",
        "content_length",
        "headers",
        "headers_done",
        "holds_pipeline_block",
        "keep_alive",
        "method",
        "start_time",
        "started_at",
        "target",
        "tunnel",
        "upgrade",
        "version",
    )

    def __init__(self, buffer_limit: int, on_backlog: Callable[[bool], None]) -> None:
        self.method = ""
        self.target = ""
        self.version = "1.1"
        self.headers: Headers = []
        self.keep_alive = True
        self.upgrade = False
        self.tunnel = False
        self.started_at = time.monotonic()
        self.start_time = time.time()
        self.headers_done = 0.0
        self.complete = False
        self.content_length: int | None = None
        self.chunked = False
        self.holds_pipeline_block = False
        self._buffer_limit = buffer_limit
        self._on_backlog = on_backlog
        self.body = BodyPipe(buffer_limit, on_backlog)

    def classify_body(self) -> None:
        """Record the framing httptools accepted (it already rejected conflicting framing)."""
        for name, value in self.headers:
            if name == "content-length":
                self.content_length = int(value.strip() or 0)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True
        if self.chunked:
            self.content_length = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def start_tunnel(self) -> None:
        """After an upgrade the pipe carries raw tunnel bytes, ending only when the client does."""
        self.tunnel = True
        self.complete = True
        self.body = BodyPipe(self._buffer_limit, self._on_backlog)
