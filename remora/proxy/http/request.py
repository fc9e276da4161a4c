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
        "started_at",
        "target",
        "trailers",
        "tunnel",
        "upgrade",
        "version",
    )

    def __init__(
        self, buffer_limit: int, on_backlog: Callable[[bool], None], now: float | None = None
    ) -> None:
        self.method = ""
        self.target = ""
        self.version = "1.1"
        self.headers: Headers = []
        self.keep_alive = True
        self.upgrade = False
        self.tunnel = False
        # Monotonic seconds; the connection passes the time of the read that began the request.
        self.started_at = time.monotonic() if now is None else now
        self.headers_done = False
        self.complete = False
        self.content_length: int | None = None
        self.chunked = False
        self.holds_pipeline_block = False
        # An HTTP/2 request's trailers (gRPC clients rarely send any): passed on to an HTTP/2
        # upstream with the request's end, dropped for HTTP/1.1 ones as Envoy does by default.
        self.trailers: Headers | None = None
        self._buffer_limit = buffer_limit
        self._on_backlog = on_backlog
        self.body = BodyPipe(buffer_limit, on_backlog)

    def classify_body(self) -> tuple[int, str] | None:
        """Record the framing; returns None, or the status and reason that refuse it.

        llhttp rejects conflicting lengths before the head is complete, but bad transfer codings
        only after it, too late for a request already forwarded. RFC 9112 §6.3: a request whose
        final coding is not chunked has no determinable length (400). §6.1: a coding the proxy
        does not implement (anything but chunked, which it decodes) gets 501, as in Envoy.
        """
        codings: list[str] = []
        for name, value in self.headers:
            if name == "content-length":
                self.content_length = int(value.strip() or 0)
            elif name == "transfer-encoding":
                codings.extend(c.strip().lower() for c in value.split(",") if c.strip())
        if codings:
            self.content_length = None
            self.chunked = codings[-1] == "chunked"
            if not self.chunked:
                return 400, "Bad Request: the final transfer-coding must be chunked"
            if len(codings) > 1:
                return 501, "Not Implemented: transfer-coding other than chunked"
        if self.upgrade and self.has_body:
            # llhttp ends an upgrade request at its head, so a body would be read as tunnel
            # bytes sent before the upstream agreed to anything: refuse it instead.
            return 400, "Bad Request: an upgrade request cannot carry a body"
        return None

    @property
    def start_time(self) -> float:
        """Wall-clock start (for access logs), derived when asked: one clock read per request
        is cheaper than two, and only a logged request needs this one."""
        return self.started_at + (time.time() - time.monotonic())

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def start_tunnel(self) -> None:
        """After an upgrade the pipe carries raw tunnel bytes, ending only when the client does."""
        self.tunnel = True
        self.complete = True
        self.body = BodyPipe(self._buffer_limit, self._on_backlog)
