"""One keep-alive HTTP/1.1 connection to an upstream host, as an asyncio protocol.

The connection parses responses with httptools and hands every event straight to the current
exchange (its sink) from inside the parser callbacks: the relay path never waits on a queue, so
a response body chunk goes from this socket to the downstream socket in one call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from remora.proxy.http.h1_codec import CLOSED_RESPONSE_PARSER, RawHeaders, unterminated_line

if TYPE_CHECKING:
    # The one kind of sink: typed as the class itself (not a Protocol), so the compiled build
    # calls its methods directly instead of through Python attribute lookup.
    from remora.proxy.http.exchange import Exchange as ResponseSink
    from remora.proxy.upstream.pool import HostPool


class UpstreamProtocolError(Exception):
    """The upstream sent bytes that are not a valid HTTP/1.1 response."""


# Which section of a response the parser was in when a read ended (see `_check_open_section`).
_NO_SECTION, _HEAD, _TRAILERS = range(3)


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_began_in_read",
        "_chunk_header_in_read",
        "_close_delimited",
        "_complete",
        "_field_bytes",
        "_field_count",
        "_fields_in_read",
        "_head_done",
        "_head_only",
        "_headers",
        "_line",
        "_max_field_bytes",
        "_max_field_count",
        "_maybe_trailers",
        "_parser",
        "_section",
        "_status",
        "closed",
        "connected",
        "expired",
        "expiry",
        "idle_since",
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
        self.expired = False  # past the cluster's max_connection_duration: not reused
        self.expiry: asyncio.TimerHandle | None = None  # the timer that will set `expired`
        self.idle_since = 0.0  # when it last went back to the pool
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Response header limits (Envoy's max_response_headers_kb and max_headers_count), and
        # the count of a head or trailer section as it arrives, as on the downstream side.
        config = pool.cluster.config
        self._max_field_bytes = config.max_response_headers_bytes
        self._max_field_count = config.max_response_headers_count
        self._field_bytes = 0
        self._field_count = 0
        self._head_done = False
        self._line = 0
        self._section = _NO_SECTION
        self._began_in_read = False
        self._fields_in_read = False
        self._chunk_header_in_read = False
        self._maybe_trailers = False

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
        self._began_in_read = self._fields_in_read = self._chunk_header_in_read = False
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
                cause = exc.__cause__ or exc.__context__
                self._fail(
                    cause
                    if isinstance(cause, UpstreamProtocolError)
                    else UpstreamProtocolError(f"invalid HTTP response from upstream: {exc}")
                )
                return
            self.keep_alive = False  # garbage after a complete response: finish it, then close
        if not self._complete and self._check_open_section(data):
            return
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

    def _check_open_section(self, data: bytes) -> bool:
        """Count what httptools holds of a head or trailer section this read left open, as
        the downstream side does; True if that broke the limit (the exchange is failed)."""
        if not self._head_done:
            if not self._began_in_read and self._section == _NO_SECTION:
                return False  # no response begun yet: nothing is held
            section = _HEAD
            continued = self._section == _HEAD and not self._began_in_read
        elif self._maybe_trailers:
            section = _TRAILERS
            continued = self._section == _TRAILERS and not self._chunk_header_in_read
        else:
            self._section = _NO_SECTION
            return False
        self._line = unterminated_line(
            data, self._line, continued, self._fields_in_read or section == _TRAILERS
        )
        self._section = section
        if self._field_bytes + self._line > self._max_field_bytes:
            self._fail(UpstreamProtocolError("response headers exceed max_response_headers_kb"))
            return True
        return False

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
        # As downstream: the parser's callbacks and the transport point back here, and a cycle
        # per closed upstream connection is left for the slow full collections.
        self._parser = CLOSED_RESPONSE_PARSER
        self.transport = None

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
        self._field_bytes = 0
        self._field_count = 0
        self._head_done = False
        self._began_in_read = True
        self._fields_in_read = False
        self._maybe_trailers = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields_in_read = True
        self._field_count += 1
        self._field_bytes += len(name) + len(value) + 4
        if self._field_bytes > self._max_field_bytes:
            raise UpstreamProtocolError("response headers exceed max_response_headers_kb")
        if self._field_count > self._max_field_count:
            raise UpstreamProtocolError("response headers exceed max_headers_count")
        if not self._head_done:
            self._headers.append((name, value))
        # else a trailer: counted like the head's fields, never merged into them, and not
        # forwarded (the re-chunked body ends with an empty trailer section).

    def on_chunk_header(self) -> None:
        self._maybe_trailers = True
        self._chunk_header_in_read = True

    def on_chunk_complete(self) -> None:
        self._maybe_trailers = False

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        self._head_done = True
        # A trailer section gets limits of its own: the head's fields have been counted.
        self._field_bytes = 0
        self._field_count = 0
        parser = self._parser
        self._status = status = parser.get_status_code()
        if 100 <= status < 200:
            # RFC 9110 §15.2: a 1xx ends at its head. One declaring content is malformed, and
            # relaying its bytes would put an unframed message ahead of the real response (or,
            # for a 101, tell the client to expect content where the tunnel begins).
            if _has_framing(self._headers, any_coding=True):
                raise UpstreamProtocolError(f"a {status} response declares content")
            if status != 101:
                if self.sink is not None:
                    self.sink.on_interim_response(status, self._headers)
                return
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
        self._maybe_trailers = False
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
        self._section = _NO_SECTION
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


def _has_framing(headers: RawHeaders, any_coding: bool = False) -> bool:
    """Whether a response head delimits its body: a content-length, or a transfer-coding
    whose final coding is chunked (RFC 9112 §6.3: with any other final coding the body ends
    at the close). With `any_coding`, whether it declares content at all."""
    has_length = False
    chunked_last: bool | None = None  # None: no transfer-encoding field
    for name, value in headers:
        if len(name) == 14 and name.lower() == b"content-length":
            has_length = True
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            # The last field's last coding is the final one.
            chunked_last = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
    if any_coding:
        return has_length or chunked_last is not None
    return has_length or bool(chunked_last)
