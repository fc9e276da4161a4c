"""The downstream side of the HTTP/1.1 connection manager: one asyncio protocol per client.

It parses with httptools, queues pipelined requests so responses leave in order, and runs one
`Exchange` at a time. Nothing here awaits: parsing, routing and relaying all happen in callbacks,
and a task exists only while an upstream connection is being opened. Timeouts (headers, request,
stream idle, connection idle) share one lazily re-armed timer per connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from remora.proxy.accesslog import AccessLogRecord
from remora.proxy.addresses import address_string
from remora.proxy.http.config import CODEC_AUTO
from remora.proxy.http.deadlines import exchange_deadline, fire
from remora.proxy.http.exchange import Exchange
from remora.proxy.http.h1_codec import (
    CLOSED_REQUEST_PARSER,
    Headers,
    encode_response_head,
    unterminated_line,
)
from remora.proxy.http.h2_downstream import PREFACE, H2DownstreamConnection
from remora.proxy.http.request import Request
from remora.proxy.http.xfcc import ALWAYS_FORWARD_ONLY, FORWARD_PLAN, SANITIZE_PLAN
from remora.proxy.http.xfcc import plan as xfcc_plan
from remora.proxy.tls.facts import TlsFacts

if TYPE_CHECKING:
    from remora.proxy.http.listener import HttpListener
    from remora.proxy.http.stream import H2Responder

_MAX_PIPELINED = 16  # queued requests before the connection stops reading
# A chunk's size line (size and extensions) that never ends costs nothing to hold, since llhttp
# keeps none of it, but it keeps a request open without a byte of content: bounded, as Node and
# Go bound chunk extensions. Empty lines before a request are bounded by the header limit.
_MAX_CHUNK_LINE_BYTES = 16 << 10
_LINGER_SECONDS = 1.0  # Envoy's delayed_close_timeout default


class _HeadersTooLarge(Exception):
    pass


class _BadFraming(Exception):
    """A request head whose framing the proxy refuses, raised from inside the parser."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


# Which section of a message the parser was in when a read ended: only in a head or a trailer
# section does httptools hold bytes it has not reported yet.
_NO_SECTION, _HEAD, _TRAILERS, _CHUNK_LINE = range(4)


class DownstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_aged",
        "_began_in_read",
        "_chunk_header_in_read",
        "_chunk_line_anchored",
        "_chunk_line_open",
        "_error_reply",
        "_fields_in_read",
        "_header_bytes",
        "_header_count",
        "_idle_bytes",
        "_line",
        "_linger_timer",
        "_lingering",
        "_maybe_trailers",
        "_read_blocks",
        "_section",
        "_sniff",
        "_timer",
        "_timer_at",
        "_trailer_bytes",
        "_trailer_count",
        "_url",
        "active",
        "closed",
        "closing",
        "h2",
        "hcm",
        "last_activity",
        "listener",
        "loop",
        "opened_at",
        "parser",
        "parsing",
        "queue",
        "remote_address",
        "remote_ip",
        "requests_started",
        "scheme",
        "stats",
        "tls_facts",
        "transport",
        "tunnel_mode",
        "tunnel_request",
        "writable",
        "xfcc",
    )

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.h2: H2Responder | None = None  # HTTP/1.1: the exchange frames its own response
        # Cached: on Python 3.11, asyncio.get_running_loop() costs a getpid(2) syscall per call.
        self.loop = asyncio.get_running_loop()
        self.hcm = listener.hcm  # the config this connection started with
        self.stats = listener.stats
        self.scheme = listener.scheme  # "https" on a TLS filter chain
        self.tls_facts: TlsFacts | None = None
        self.xfcc = SANITIZE_PLAN
        self.transport: asyncio.Transport | None = None
        self.remote_ip = ""
        self.remote_address = ""
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.parsing: Request | None = None
        self.active: Exchange | None = None
        self.closed = False
        self.closing = False  # no more requests will be read
        self.writable = True
        self.requests_started = 0
        self.tunnel_mode = False
        self.tunnel_request: Request | None = None
        self._read_blocks = 0
        self._error_reply: tuple[int, str] | None = None
        self._lingering = False  # owed after the requests before it
        self._linger_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._trailer_bytes = 0
        self._trailer_count = 0
        # Counting a head or trailer section as it arrives (see `_check_open_section`).
        self._line = 0
        self._section = _NO_SECTION
        self._began_in_read = False
        self._fields_in_read = False
        self._chunk_header_in_read = False
        self._maybe_trailers = False  # a chunk header was the last thing parsed: maybe the last
        self._chunk_line_open = False  # between two chunks: the next size line is being read
        self._chunk_line_anchored = False  # a size line began in this read
        self._idle_bytes = 0  # empty lines read since the last message, before the next begins
        self._url = bytearray()
        self.last_activity = self.opened_at = time.monotonic()
        self._aged = False  # max_connection_duration has passed: no request after this one
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # codec_type AUTO: the first bytes may be HTTP/2's preface (h2c with prior knowledge).
        self._sniff: bytes | None = b"" if self.hcm.codec == CODEC_AUTO else None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.listener.buffer_limit)
        peer = transport.get_extra_info("peername")
        if peer:
            self.remote_ip = str(peer[0])
            self.remote_address = address_string(str(peer[0]), int(peer[1]))
        self.listener.connections.add(self)
        stats = self.stats
        stats.downstream_cx_total.inc()
        stats.downstream_cx_active.inc()
        if self._sniff is None:
            stats.downstream_cx_http1_total.inc()
            stats.downstream_cx_http1_active.inc()
        if self.scheme == "https":
            stats.downstream_cx_ssl_total.inc()
            stats.downstream_cx_ssl_active.inc()
            tls = transport.get_extra_info("tls")
            self.tls_facts = facts = tls.facts if tls is not None else None
            hcm = self.hcm
            self.xfcc = xfcc_plan(hcm.forward_client_cert, facts, hcm.client_cert_details)
            if facts is not None and facts.alpn is not None and self._sniff is not None:
                if facts.alpn == "h2":
                    self.listener.listener_stats.on_open()
                    self._become_h2(b"")
                    return
                self._is_http1()  # ALPN chose HTTP/1.1
        elif self.hcm.forward_client_cert == ALWAYS_FORWARD_ONLY:
            self.xfcc = FORWARD_PLAN
        self.listener.listener_stats.on_open()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self._sniff is not None:
            data = self._sniff + data
            if data[: len(PREFACE)] == PREFACE[: len(data)]:
                if len(data) < len(PREFACE):
                    self._sniff = data  # the preface so far: wait for the rest
                    return
                self._become_h2(data)
                return
            self._is_http1()
        self.last_activity = time.monotonic()
        self.stats.downstream_cx_rx_bytes_total.inc(len(data))
        if self.tunnel_request is not None:
            self.tunnel_request.body.feed(data)
            return
        if self.closing:
            return
        self._began_in_read = self._fields_in_read = self._chunk_header_in_read = False
        self._chunk_line_anchored = False
        was_parsing = self.parsing is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data[exc.args[0] :])
            return
        except _HeadersTooLarge:
            self._too_large()
            return
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _HeadersTooLarge):
                self._too_large()
            elif isinstance(cause, _BadFraming):
                self.stats.downstream_cx_protocol_error.inc()
                self.protocol_error(cause.status, cause.reason)
            else:
                self.stats.downstream_cx_protocol_error.inc()
                self.protocol_error(400, f"Bad Request: {exc}")
            return
        if self.parsing is not None:
            self._check_open_section(data)
            return
        self._section = _NO_SECTION
        if was_parsing or self._began_in_read:
            self._idle_bytes = 0
            return
        # Nothing began: llhttp skipped the whole read as empty lines before a request.
        self._idle_bytes += len(data)
        if self._idle_bytes > self.hcm.max_request_headers_bytes and not self.closing:
            self.stats.downstream_cx_protocol_error.inc()
            self.protocol_error(400, "Bad Request: too many empty lines before a request")

    def _check_open_section(self, data: bytes) -> None:
        """Count what httptools holds of a head or trailer section that this read left open.

        A field is reported only once it ends, so a field that never ends would otherwise grow
        in httptools' buffer (at quadratic cost) without ever meeting the limit. The section's
        reported bytes plus its current unterminated line must stay within the limit too.
        """
        parsing = self.parsing
        assert parsing is not None
        if not parsing.headers_done:
            section = _HEAD
            continued = self._section == _HEAD and not self._began_in_read
            anchored = self._fields_in_read
            reported = self._header_bytes
        elif self._maybe_trailers:
            section = _TRAILERS
            continued = self._section == _TRAILERS and not self._chunk_header_in_read
            anchored = True  # the last chunk's size line ended in this read
            reported = self._trailer_bytes
        elif self._chunk_line_open:
            continued = self._section == _CHUNK_LINE and not self._chunk_line_anchored
            self._line = unterminated_line(data, self._line, continued, True)
            self._section = _CHUNK_LINE
            if self._line > _MAX_CHUNK_LINE_BYTES:
                self.stats.downstream_cx_protocol_error.inc()
                self.protocol_error(400, "Bad Request: chunk size line too long")
            return
        else:
            self._section = _NO_SECTION
            return
        self._line = unterminated_line(data, self._line, continued, anchored)
        self._section = section
        if reported + self._line > self.hcm.max_request_headers_bytes:
            self._too_large()

    def _is_http1(self) -> None:
        self._sniff = None
        self.stats.downstream_cx_http1_total.inc()
        self.stats.downstream_cx_http1_active.inc()

    def _become_h2(self, data: bytes) -> None:
        """Hand the socket to an HTTP/2 connection, with what was counted at accept: the new
        one counts only that it is HTTP/2, and uncounts all of it when it closes."""
        self._sniff = None
        transport = self.transport
        assert transport is not None
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.listener.connections.discard(self)
        self.parser = CLOSED_REQUEST_PARSER
        self.transport = None
        h2 = H2DownstreamConnection(self.listener, counted=True)
        transport.set_protocol(h2)
        h2.connection_made(transport)
        if data:
            h2.data_received(data)

    def _too_large(self) -> None:
        self.stats.downstream_rq_too_large.inc()
        self.protocol_error(431, "")

    def eof_received(self) -> bool | None:
        if self._lingering:
            return None  # the client is done too: close now
        active = self.active
        if self.tunnel_mode and active is not None:
            active.on_downstream_eof()
            return True  # keep the write side open until the upstream finishes
        queue = self.queue
        while queue and not queue[-1].complete:
            queue.pop()  # its body can never arrive now
        if active is None and not queue:
            return None  # close
        if active is not None and not active.request.complete:
            return None  # close: the exchange is reset as if the connection were lost
        self.closing = True
        return True  # let the in-flight response finish, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._linger_timer is not None:  # the client closed first: nothing left to wait for
            self._linger_timer.cancel()
            self._linger_timer = None
        self.listener.connections.discard(self)
        stats = self.stats
        stats.downstream_cx_active.dec()
        if self._sniff is None:
            stats.downstream_cx_http1_active.dec()
        if self.scheme == "https":
            stats.downstream_cx_ssl_active.dec()
        self.listener.listener_stats.on_close()
        active, self.active = self.active, None
        if active is not None:
            active.on_downstream_lost()
        self.queue.clear()
        # The parser's callbacks and the transport both point back here: left in place, every
        # closed connection is a reference cycle that only a full collection frees, and with
        # connection churn those collections came every few seconds and took 100-160 ms each
        # (the new-connection P99). Dropped, the connection is freed when its last user lets go.
        self.parser = CLOSED_REQUEST_PARSER
        self.transport = None
        self.parsing = None

    def pause_writing(self) -> None:
        self.writable = False
        if self.active is not None:
            self.active.on_downstream_writable(False)

    def resume_writing(self) -> None:
        self.writable = True
        if self.active is not None:
            self.active.on_downstream_writable(True)
        elif self.queue:
            self._start_next()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url.clear()
        self._header_bytes = 0
        self._header_count = 0
        self._trailer_bytes = 0
        self._trailer_count = 0
        self._began_in_read = True
        self._fields_in_read = False
        self._maybe_trailers = False
        self._chunk_line_open = False
        request = Request(self.listener.buffer_limit, self.block_reading, self.last_activity)
        self.parsing = request
        self.requests_started += 1
        if self.hcm.request_headers_timeout is not None or self.hcm.request_timeout is not None:
            self._arm_timer()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.hcm.max_request_headers_bytes:
            raise _HeadersTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.parsing
        assert request is not None
        self._fields_in_read = True
        if request.headers_done:
            self._on_trailer(name, value)
            return
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if (
            self._header_bytes > self.hcm.max_request_headers_bytes
            or self._header_count > self.hcm.max_headers_count
        ):
            raise _HeadersTooLarge()
        request.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        """A field of a chunked request's trailer section: counted, never merged into the head.

        RFC 9110 §6.5.1: trailer fields must not be combined with header fields; a `Host` or
        `Expect` arriving as a trailer must not route, or answer, the request. They are not
        forwarded either (Envoy's default for HTTP/1.1, `enable_trailers: false`).
        """
        self._trailer_count += 1
        self._trailer_bytes += len(name) + len(value) + 4
        if (
            self._trailer_bytes > self.hcm.max_request_headers_bytes
            or self._trailer_count > self.hcm.max_headers_count
        ):
            raise _HeadersTooLarge()

    def on_headers_complete(self) -> None:
        request = self.parsing
        assert request is not None
        if self.closing:
            # RFC 9112 §9.6: nothing after the request that closes the connection is processed
            # (llhttp is still working through bytes that arrived in the same read).
            self.parsing = None
            return
        parser = self.parser
        request.method = parser.get_method().decode("ascii")
        request.target = self._url.decode("latin-1")
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        request.upgrade = parser.should_upgrade()
        request.headers_done = True
        framing_error = request.classify_body()
        if framing_error:
            raise _BadFraming(*framing_error)
        if request.chunked:
            self._chunk_line_open = self._chunk_line_anchored = True
        if not request.has_body and not request.upgrade:
            request.complete = True  # so a reply sent before llhttp's message-complete keeps alive
        if request.upgrade:
            # llhttp stops right after this head; whatever follows is tunnel data.
            request.start_tunnel()
            self.tunnel_mode = True
            self.tunnel_request = request
        if self.active is None and not self.queue and self.writable:
            self._start(request)  # the usual case: nothing in flight, no queue to go through
            return
        self.queue.append(request)
        if len(self.queue) > _MAX_PIPELINED:
            self.block_reading(True)
            request.holds_pipeline_block = True
        if self.active is None:
            self._start_next()

    def on_body(self, body: bytes) -> None:
        self._maybe_trailers = False
        request = self.parsing
        if request is not None:
            request.body.feed(body)

    def on_chunk_header(self) -> None:
        # A chunk whose data does not follow at once is the last one: trailers come next.
        self._maybe_trailers = True
        self._chunk_header_in_read = True
        self._chunk_line_open = False

    def on_chunk_complete(self) -> None:
        self._maybe_trailers = False
        self._chunk_line_open = self._chunk_line_anchored = True

    def on_message_complete(self) -> None:
        request = self.parsing
        self.parsing = None
        self._chunk_line_open = False
        if request is not None and not request.tunnel:
            request.body.finish()
            request.complete = True
            active = self.active
            if active is not None and active.request is request:
                active.on_request_complete()

    # -- flow control ----------------------------------------------------------------------
    def block_reading(self, block: bool) -> None:
        """Reasons to stop reading are counted, so the last one to clear resumes reading."""
        self._read_blocks += 1 if block else -1
        transport = self.transport
        if transport is None or self.closed or self._lingering:
            return
        if self._read_blocks == 1 and block:
            transport.pause_reading()
        elif self._read_blocks == 0 and not block:
            transport.resume_reading()

    def write(self, data: bytes) -> None:
        # Once closing has begun (the write side is shut), nothing more may be written: a later
        # parse error in bytes of the same read must not try to answer again.
        if self.transport is not None and not self.closed and not self._lingering:
            self.last_activity = time.monotonic()  # a response in flight is not an idle stream
            self.stats.downstream_cx_tx_bytes_total.inc(len(data))
            self.transport.write(data)

    # -- exchanges -------------------------------------------------------------------------
    def _start_next(self) -> None:
        # A client that is not reading its responses gets no new ones: local replies need no
        # upstream to stall on, so without this a pipelining client could grow the buffer forever.
        while self.queue and self.active is None and not self.closed and self.writable:
            request = self.queue.popleft()
            if request.holds_pipeline_block:
                request.holds_pipeline_block = False
                self.block_reading(False)
            self.active = Exchange(self, request)
            self.active.start()
        self._watch_active()

    def _start(self, request: Request) -> None:
        if self.closed:
            return
        self.active = active = Exchange(self, request)
        active.start()
        self._watch_active()

    def _watch_active(self) -> None:
        active = self.active
        if active is not None:
            # The connection's timer may be set for a later deadline (idle, or the previous
            # exchange's): bring it forward if this exchange's clocks end sooner.
            hcm = self.hcm
            at = float("inf")
            if hcm.stream_idle_timeout is not None:
                # An earlier deadline than due (last_activity may be a little old) only makes
                # the timer re-check sooner.
                at = self.last_activity + hcm.stream_idle_timeout
            if hcm.request_timeout is not None and not active.request.complete:
                at = min(at, active.request.started_at + hcm.request_timeout)
            if at < self._timer_at or self._timer is None:
                self._arm_timer()

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        """Called once per exchange, after its response was fully written (or abandoned)."""
        if self.active is not exchange:
            return
        self.active = None
        self.last_activity = time.monotonic()
        max_requests = self.hcm.max_requests_per_connection
        if (
            not keep_alive
            or self.tunnel_mode
            or self.listener.draining
            or self._aged
            or (max_requests is not None and self.requests_started >= max_requests)
        ):
            self.close()
            return
        if self.queue:
            # Even when closing (the client half-closed, or sent something unparseable), the
            # complete requests it sent before that are answered, in order.
            self._start_next()
        elif self.closing:
            error, self._error_reply = self._error_reply, None
            if error is not None:
                self.send_simple(error[0], error[1], close=True)
            self.close()
        elif self._timer is None or self.parsing is not None:
            # An armed timer re-checks the deadlines when it fires; idling only moves them later,
            # but a request already being parsed brings its own (possibly earlier) deadlines.
            self._arm_timer()

    def wants_close_after(self, request: Request) -> bool:
        """Whether the response to `request` must say `connection: close`."""
        max_requests = self.hcm.max_requests_per_connection
        return (
            not request.keep_alive
            or (self.closing and not self.queue and self._error_reply is None)
            or self.listener.draining
            or self._aged
            or (max_requests is not None and self.requests_started >= max_requests)
        )

    def _on_upgrade(self, rest: bytes) -> None:
        # llhttp stops at the end of an upgrade request's head; what follows belongs to the tunnel.
        request = self.tunnel_request
        self.parsing = None
        if request is None:
            self.protocol_error(400, "Bad Request: upgrade without a request")
            return
        if rest:
            request.body.feed(rest)

    # -- errors and close ------------------------------------------------------------------
    def protocol_error(self, status: int, body: str) -> None:
        """Answer a request that cannot be parsed, then close: the stream is out of sync."""
        if self._lingering or self.closed:
            return  # already answered and closing; the rest of the input is only drained
        self.closing = True
        active = self.active
        parsing = self.parsing
        if active is not None and parsing is active.request:
            # The request in flight is broken (e.g. a bad chunk): reset it, as Envoy does.
            self.queue.clear()
            active.on_protocol_error(status, body)
            return
        queue = self.queue
        if parsing is not None and queue and queue[-1] is parsing:
            # A pipelined request known to be broken is never started: the requests before it
            # are answered, then this error.
            queue.pop()
            parsing.body.detach()
            if parsing.holds_pipeline_block:
                parsing.holds_pipeline_block = False
                self.block_reading(False)
        if active is not None or queue:
            # The broken request is a later, pipelined one: answer those before it first.
            self._error_reply = (status, body)
            return
        self.send_simple(status, body, close=True)
        self.close()

    def send_simple(self, status: int, body: str, close: bool, flag: str = "DPE") -> None:
        """A reply with no exchange behind it: the request never parsed, or never finished."""
        payload = body.encode("utf-8")
        headers: Headers = [
            ("content-length", str(len(payload))),
            ("content-type", "text/plain"),
            ("server", self.hcm.server_name),
        ]
        if close:
            headers.append(("connection", "close"))
        self.stats.response_class(status).inc()
        head = encode_response_head(status, headers)
        if self.parsing is not None and self.parser.get_method() == b"HEAD":
            payload = b""  # a HEAD's answer has no content, however broken the request was
        self.write(head + payload)
        if self.hcm.access_logs:
            self._log_simple(status, flag, headers, len(head) + len(payload))

    def _log_simple(self, status: int, flag: str, headers: Headers, sent: int) -> None:
        # Envoy logs these too (e.g. a 400 with DPE); fill in what was parsed before it failed.
        parsing = self.parsing
        started = parsing.start_time if parsing is not None else time.time()
        record = AccessLogRecord(
            start_time=started,
            method=parsing.method or None if parsing is not None else None,
            path=self._url.decode("latin-1") or None if parsing is not None else None,
            request_headers=list(parsing.headers) if parsing is not None else [],
            response_headers=headers,
            response_code=status,
            response_flags=flag,
            duration_ms=(time.time() - started) * 1000,
            bytes_sent=sent,
            downstream_remote_address=self.remote_address,
        )
        for logger in self.hcm.access_logs:
            logger.log(record)

    def close(self) -> None:
        """Close after what is buffered has been sent, without resetting the client.

        Closing a socket that still holds unread request bytes makes the kernel send a reset,
        which can destroy the response before the client reads it (a reply sent during an
        upload, a 4xx for a bad request). So the write side is shut first (the client sees the
        end of the response at once), what the client still sends is read and dropped, and the
        socket closes when the client closes or after a short linger, like Envoy's
        delayed_close_timeout.
        """
        self.closing = True
        transport = self.transport
        if transport is None or self.closed or self._lingering:
            return
        if self.tunnel_mode or not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        transport.write_eof()
        transport.resume_reading()  # whatever paused it, the rest is now only drained
        self._linger_timer = self.loop.call_later(_LINGER_SECONDS, self._end_linger)

    def _end_linger(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def drain(self) -> None:
        """Graceful shutdown: idle connections close now, busy ones after their response."""
        if self.active is None and not self.queue and self.parsing is None:
            self.stats.downstream_cx_drain_close.inc()
            self.close()

    # -- timers ----------------------------------------------------------------------------
    def _next_deadline(self) -> tuple[float, str] | None:
        """The earliest timeout that applies in the connection's current state."""
        hcm = self.hcm
        candidates: list[tuple[float, str]] = []
        parsing = self.parsing
        active = self.active
        if parsing is not None and not parsing.headers_done and active is None and not self.queue:
            # A pipelined request's clock is checked only once it is next: its 408 must not be
            # written into (or instead of) the response still in flight before it.
            if hcm.request_headers_timeout is not None:
                candidates.append((parsing.started_at + hcm.request_headers_timeout, "headers"))
            if hcm.request_timeout is not None:
                candidates.append((parsing.started_at + hcm.request_timeout, "request"))
        if active is not None:
            found = exchange_deadline(hcm, active, self.last_activity, self.tunnel_mode)
            if found is not None:
                candidates.append(found)
        elif not self.queue and not self.tunnel_mode and hcm.idle_timeout is not None:
            candidates.append((self.last_activity + hcm.idle_timeout, "idle"))
        if hcm.max_connection_duration is not None and not self._aged:
            candidates.append((self.opened_at + hcm.max_connection_duration, "max_duration"))
        return min(candidates) if candidates else None

    def deadline_added(self, at: float) -> None:
        """A new deadline for the active exchange; the timer only moves if it comes sooner."""
        if self._timer is None or at < self._timer_at:
            self._arm_timer()

    def _arm_timer(self) -> None:
        if self.closed or self._lingering:
            return  # a lingering connection only waits for its own close
        deadline = self._next_deadline()
        if deadline is None:
            return
        at = deadline[0]
        if self._timer is not None and self._timer_at <= at:
            return  # the earlier timer will re-check and re-arm
        if self._timer is not None:
            self._timer.cancel()
        loop = self.loop
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + max(0.0, at - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed or self._lingering:
            return
        deadline = self._next_deadline()
        if deadline is None:
            return
        at, kind = deadline
        if at > time.monotonic():
            self._arm_timer()
            return
        stats = self.stats
        if kind == "idle":
            stats.downstream_cx_idle_timeout.inc()
            self.close()
        elif kind == "headers":
            stats.downstream_rq_header_timeout.inc()
            self.closing = True
            # Envoy sets no response flag for the request and header timeouts; only the stream
            # idle timeout is `SI`.
            self.send_simple(408, "request header timeout", close=True, flag="")
            self.close()
        elif kind == "max_duration":
            # Envoy's drain for HTTP/1.1: an idle connection closes now, a busy one after the
            # response it is on (which says `connection: close`).
            stats.downstream_cx_max_duration_reached.inc()
            self._aged = True
            if self.active is None and not self.queue and self.parsing is None:
                self.close()
        elif self.active is not None:
            fire(kind, self.active, stats)
        elif kind == "request":
            stats.downstream_rq_timeout.inc()
            self.closing = True
            self.send_simple(408, "request timeout", close=True, flag="")
            self.close()
        if not self.closed:
            self._arm_timer()
