"""One HTTP/2 stream as its exchange sees it: the downstream it reads from and answers through.

The connection (`h2_downstream.H2DownstreamConnection`) owns the h2 state machine and the socket;
a stream holds what is particular to one request. Each direction is flow-controlled on its own:

- request bytes are credited back to the client (a stream WINDOW_UPDATE) only while the stream
  is not blocked, that is while its body pipe has room and the upstream takes what it is given;
  a stalled upstream therefore stalls its own stream and nothing else;
- response bytes leave as far as the client's windows allow; the rest wait here, and past the
  listener's buffer limit the stream reports itself unwritable, which pauses its upstream.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from remora.proxy import response_flags as flags
from remora.proxy.http.deadlines import exchange_deadline, fire
from remora.proxy.http.h2_outbound import Outbound
from remora.proxy.http.request import Request

if TYPE_CHECKING:
    from remora.proxy.http.exchange import Exchange
    from remora.proxy.http.h1_codec import Headers
    from remora.proxy.http.h2_downstream import H2DownstreamConnection
    from remora.proxy.http.stream import H2Responder


def encode_fields(status: int | None, headers: Headers) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if status is not None:
        out.append((b":status", str(status).encode()))
    for name, value in headers:
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


class H2Stream:
    """The `DownstreamStream` of one HTTP/2 request, and its `H2Responder`."""

    __slots__ = (
        "_blocks",
        "_owed",
        "_timer",
        "_timer_at",
        "active",
        "closed",
        "conn",
        "ended",
        "h2",
        "hcm",
        "last_activity",
        "listener",
        "outbound",
        "remote_address",
        "remote_ip",
        "request",
        "response_started",
        "scheme",
        "stats",
        "stream_id",
        "tls_facts",
        "transport",
        "tunnel_mode",
        "writable",
        "xfcc",
    )

    def __init__(self, conn: H2DownstreamConnection, stream_id: int, started_at: float) -> None:
        self.conn = conn
        self.stream_id = stream_id
        # Filled in from the HEADERS by the connection; its body's backlog blocks this stream.
        self.request = Request(conn.listener.buffer_limit, self.block_reading, started_at)
        self.request.version = "2"
        self.request.headers_done = True
        self.h2: H2Responder | None = self
        self.hcm = conn.hcm
        self.stats = conn.stats
        self.listener = conn.listener
        self.scheme = conn.scheme
        self.remote_ip = conn.remote_ip
        self.remote_address = conn.remote_address
        self.tls_facts = conn.tls_facts
        self.xfcc = conn.xfcc
        self.transport = conn.transport
        self.last_activity = started_at
        self.writable = conn.writable
        self.tunnel_mode = False
        self.active: Exchange | None = None
        self.closed = False  # released: no more frames of this stream are sent
        self.ended = False  # the response's end (END_STREAM) was handed to h2
        self.response_started = False
        self.outbound = Outbound()  # response data the client's windows hold back
        self._blocks = 0  # reasons not to credit request bytes back (see block_reading)
        self._owed = 0  # request bytes received while blocked, credited when unblocked
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- the request direction (called by the connection) ------------------------------------
    def on_data(self, data: bytes, flow_controlled: int, ended: bool) -> int:
        """Feed request bytes; returns how many to credit back to the stream's window now
        (none once the request has ended: the window is of no further use)."""
        self.last_activity = self.conn.last_activity
        if data:
            self.request.body.feed(data)
        if ended:
            return 0
        if self._blocks:
            self._owed += flow_controlled
            return 0
        return flow_controlled

    def on_end(self) -> None:
        request = self.request
        if request.complete:
            return
        request.body.finish()
        request.complete = True
        active = self.active
        if active is not None:
            active.on_request_complete()

    def on_reset(self) -> None:
        """The client reset the stream (RST_STREAM): whatever was under way stops."""
        active = self.active
        self.release()
        if active is not None:
            active.on_downstream_lost(flags.DOWNSTREAM_REMOTE_RESET)

    def on_connection_lost(self) -> None:
        active = self.active
        self.release()
        if active is not None:
            active.on_downstream_lost()

    # -- DownstreamStream --------------------------------------------------------------------
    def block_reading(self, block: bool) -> None:
        """Reasons to stop crediting request bytes are counted, as HTTP/1.1 counts read
        blocks; the last to clear credits what arrived meanwhile."""
        self._blocks += 1 if block else -1
        if self._blocks == 0 and self._owed and not self.closed and not self.request.complete:
            owed, self._owed = self._owed, 0
            self.conn.credit_stream(self.stream_id, owed)

    def write(self, data: bytes) -> None:
        """HTTP/1.1's framed bytes have no place on a stream: all it carries is data."""
        self.send_data(data)

    def wants_close_after(self, request: Request) -> bool:
        return False  # HTTP/2 has no `connection: close`; draining is the connection's GOAWAY

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        if self.active is not exchange:
            return
        self.active = None
        self._cancel_timer()
        if not self.ended:
            # Done without an end: whatever the client has of the response is incomplete.
            self.abort()
        elif not self.outbound.end_held:
            self._after_end()

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        """A response that cannot be completed: the client must see a reset, not an end."""
        if self.closed:
            return
        self.conn.reset_stream(self.stream_id, ErrorCodes.INTERNAL_ERROR)
        self.release()

    def deadline_added(self, at: float) -> None:
        if self._timer is None or at < self._timer_at:
            self.arm_timer()

    # -- H2Responder -------------------------------------------------------------------------
    def send_interim(self, status: int, headers: Headers) -> None:
        if not self.closed:
            self.conn.send_headers(self.stream_id, encode_fields(status, headers), False)

    def send_head(self, status: int, headers: Headers, end_stream: bool) -> None:
        if self.closed:
            return
        self.response_started = True
        self.last_activity = time.monotonic()
        self.conn.send_headers(self.stream_id, encode_fields(status, headers), end_stream)
        if end_stream:
            self.ended = True
            self._after_end()

    def send_data(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.last_activity = time.monotonic()
        self.outbound.send(data, self._send_now)
        if self.outbound.pending_bytes > self.listener.buffer_limit and self.writable:
            self._set_writable(False)

    def _send_now(self, data: bytes) -> int:
        return self.conn.send_data(self.stream_id, data)

    @property
    def pending_bytes(self) -> int:
        return self.outbound.pending_bytes

    def send_end(self, trailers: Headers | None) -> None:
        if self.closed or self.ended:
            return
        self.ended = True
        if not self.outbound.hold_end(trailers):
            self._send_end(trailers)

    def _send_end(self, trailers: Headers | None) -> None:
        if trailers:
            self.conn.send_headers(self.stream_id, encode_fields(None, trailers), True)
        else:
            self.conn.end_stream(self.stream_id)
        self._after_end()

    def flush_pending(self) -> None:
        """The client opened a window: send what waits, as far as it now allows."""
        if self.closed:
            return
        end_due = self.outbound.flush(self._send_now)
        if self.closed:
            return
        if end_due:
            self._send_end(self.outbound.trailers)
            return
        if (
            not self.writable
            and self.conn.writable
            and self.outbound.pending_bytes <= self.listener.buffer_limit // 2
        ):
            self._set_writable(True)

    def on_connection_writable(self, writable: bool) -> None:
        if writable and self.outbound.pending_bytes > self.listener.buffer_limit:
            return  # still held by its own backlog
        if writable != self.writable:
            self._set_writable(writable)

    def _set_writable(self, writable: bool) -> None:
        self.writable = writable
        if self.active is not None:
            self.active.on_downstream_writable(writable)

    def _after_end(self) -> None:
        """The response's last frame is with h2. Once the exchange is done too, the stream is
        over; a request still arriving is cut off with NO_ERROR (RFC 9113 §8.1)."""
        if self.active is not None:
            return
        if not self.request.complete:
            self.conn.reset_stream(self.stream_id, ErrorCodes.NO_ERROR)
        self.release()

    def release(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        self.outbound.clear()
        self.request.body.detach()
        self.conn.stream_released(self)

    # -- timers ------------------------------------------------------------------------------
    def arm_timer(self) -> None:
        """Bring the stream's one timer forward to the exchange's earliest deadline."""
        active = self.active
        if active is None or self.closed:
            return
        found = exchange_deadline(self.hcm, active, self.last_activity, False)
        if found is None:
            return
        at = found[0]
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        loop = self.conn.loop
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + max(0.0, at - time.monotonic()), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        active = self.active
        if active is None or self.closed:
            return
        found = exchange_deadline(self.hcm, active, self.last_activity, False)
        if found is None:
            return
        at, kind = found
        if at > time.monotonic():
            self.arm_timer()
            return
        try:
            fire(kind, active, self.stats)
        finally:
            self.conn.flush()
        if not self.closed:
            self.arm_timer()
