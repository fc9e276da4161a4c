"""One keep-alive HTTP/1.1 connection to an upstream host, as an asyncio protocol.

The connection parses responses with httptools and hands every event straight to the current
exchange (its sink) from inside the parser callbacks: the relay path never waits on a queue, so
a response body chunk goes from this socket to the downstream socket in one call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from remora.proxy.http.h1_codec import RawHeaders

if TYPE_CHECKING:
    # The one kind of sink: typed as the class itself (not a Protocol), so the compiled build
    # calls its methods directly instead of through Python attribute lookup.
    from remora.proxy.http.exchange import Exchange as ResponseSink
    from remora.proxy.upstream.pool import HostPool


class UpstreamProtocolError(Exception):
    """The upstream sent bytes that are not a valid HTTP/1.1 response."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_close_delimited",
        "_complete",
        "_head_only",
        "_headers",
        "_parser",
        "_status",
        "closed",
        "connected",
        "keep_alive",
        "pool",
        "requests",
        "sink",
        "transport",
        "upgraded",
        "writable",
    )

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.sink: ResponseSink | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: RawHeaders = []  # undecoded: most are forwarded as they came
        self._head_only = False
        self._status = 0  # of the response being parsed
        self._complete = False  # the current response ended; released once the read is parsed
        self._close_delimited = False  # the current response's body ends when the upstream closes
        self.keep_alive = True
        self.closed = False
        self.upgraded = False
        self.writable = True
        self.requests = 0
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.pool.buffer_limit)
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            if self.sink is not None:
                self.sink.on_upgraded_data(data)
            return
        sink = self.sink
        if sink is None:
            # Bytes with no request outstanding: the upstream is out of sync; never reuse it.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            self.upgraded = True
            rest = data[offset:]
            if rest and self.sink is not None:
                self.sink.on_upgraded_data(rest)
            return
        except httptools.HttpParserError as exc:
            if not self._complete:
                self._fail(UpstreamProtocolError(f"invalid HTTP response from upstream: {exc}"))
                return
            self.keep_alive = False  # garbage after a complete response: finish it, then close
        if self._complete:
            # Completion waits until the parser has returned: releasing the connection from
            # inside a callback could start the next request on it while llhttp still holds
            # bytes of this read, which would then be parsed as that request's response.
            self._complete = False
            if self._head_only:
                # HEAD responses declare a length they never send; llhttp cannot be told, so
                # start a fresh parser for the next response on this connection.
                self._parser = httptools.HttpResponseParser(self)
                self._head_only = False
            self._finish()
        else:
            sink.on_read_done()

    def eof_received(self) -> bool | None:
        if self._close_delimited and self.sink is not None:
            # RFC 9112 §6.3: with neither length nor chunked coding, the close ends the body.
            self._close_delimited = False
            self.keep_alive = False
            self._finish()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionResetError("connection closed"))
        self.pool.on_connection_closed(self)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.on_upstream_lost(exc)

    def pause_writing(self) -> None:
        self.writable = False
        if self.sink is not None:
            self.sink.on_upstream_writable(False)

    def resume_writing(self) -> None:
        self.writable = True
        if self.sink is not None:
            self.sink.on_upstream_writable(True)

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            # A second response in the read that completed the first: nothing asked for it.
            self.keep_alive = False
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        parser = self._parser
        self._status = status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim responses are consumed here; Expect is answered by the proxy
        self.keep_alive = parser.should_keep_alive()
        headers = self._headers
        if self.sink is not None:
            self.sink.on_response_head(status, headers, self.keep_alive)
        if self._head_only:
            self._complete = True
        elif status not in (101, 204, 304) and not _has_framing(headers):
            self._close_delimited = True
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        if self._complete:
            # Bytes past a complete response (or past a HEAD response's head) in one read.
            self.keep_alive = False
        elif self.sink is not None:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        status = self._status
        if 100 <= status < 200 and status != 101:
            return
        if status == 101:
            return  # the connection becomes a tunnel; the exchange owns it until close
        self._close_delimited = False
        self._complete = True

    # -- used by the exchange --------------------------------------------------------------
    def begin(self, sink: ResponseSink, head: bytes, head_only: bool) -> None:
        """Start one request: its head is written now; the body, if any, follows via `write`."""
        assert self.transport is not None
        self.sink = sink
        self._head_only = head_only
        self._complete = False
        self._close_delimited = False
        self.requests += 1
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _finish(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.on_response_complete()

    def _fail(self, error: Exception) -> None:
        sink, self.sink = self.sink, None
        self.abort()
        if sink is not None:
            sink.on_upstream_lost(error)


def _has_framing(headers: RawHeaders) -> bool:
    """Whether a response head delimits its body (content-length or transfer-encoding)."""
    for name, _ in headers:
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            return True
    return False
