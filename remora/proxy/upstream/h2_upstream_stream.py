"""One request on an HTTP/2 upstream connection, as its exchange sees it.

The exchange drives an HTTP/1.1 upstream connection and an HTTP/2 stream through the same
few calls (`write`-like body sends, an end, pause and resume of the response, abort), and the
stream calls back into it as the HTTP/1.1 parser does (`on_response_head`, `_body`,
`_complete`, `on_upstream_lost`). The connection (`h2_upstream.H2UpstreamConnection`) owns h2
and the socket. Each direction is flow-controlled on its own, as on the downstream side:

- response bytes are credited back to the upstream (a stream WINDOW_UPDATE) only while the
  exchange's client keeps up, so a slow client stalls its own stream and no other;
- request bytes leave as far as the upstream's windows allow; the rest wait here, and past the
  cluster's buffer limit the stream reports itself unwritable, which stops reading the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from remora.proxy.http.h2_outbound import Outbound
from remora.proxy.http.h2_stream import encode_fields
from remora.proxy.upstream.h1_connection import UpstreamProtocolError

if TYPE_CHECKING:
    from remora.proxy.http.exchange import Exchange
    from remora.proxy.http.h1_codec import Headers, RawHeaders
    from remora.proxy.upstream.h2_upstream import H2UpstreamConnection


class UpstreamReset(Exception):
    """The upstream ended a stream before its response did: RST_STREAM, or a GOAWAY that did
    not cover it. `refused`: the upstream never processed it (REFUSED_STREAM, or past the
    GOAWAY's last stream), so it is safe to try again (Envoy's `refused-stream`)."""

    def __init__(self, message: str, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def split_status(fields: list[tuple[bytes, bytes]]) -> tuple[int, RawHeaders]:
    """The `:status` and the regular fields of a response HEADERS (h2 has validated the
    fields; a `:status` that is not three digits is 0)."""
    status = 0
    raw: RawHeaders = []
    for name, value in fields:
        if name[:1] == b":":
            if name == b":status" and len(value) == 3 and value.isdigit():
                status = int(value)
        else:
            raw.append((name, value))
    return status, raw


class H2UpstreamStream:
    __slots__ = (
        "_blocked",
        "_owed",
        "buffer_limit",
        "closed",
        "conn",
        "outbound",
        "request_ended",
        "response_ended",
        "sink",
        "stream_id",
        "transport",
        "writable",
    )

    def __init__(self, conn: H2UpstreamConnection, stream_id: int, sink: Exchange) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.sink: Exchange | None = sink
        self.buffer_limit = conn.pool.buffer_limit
        self.transport = None  # no tunnel rides an HTTP/2 stream here
        self.closed = False
        self.writable = conn.writable
        self.request_ended = False  # END_STREAM was handed to h2 (or waits behind data)
        self.response_ended = False
        self.outbound = Outbound()  # request data the upstream's windows hold back
        self._blocked = False  # response bytes are not credited back (the client is behind)
        self._owed = 0

    # -- the request direction (called by the exchange) --------------------------------------
    def begin(self, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.request_ended = end_stream
        self.conn.send_headers(self.stream_id, fields, end_stream)

    def send_data(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.outbound.send(data, self._send_now)
        if self.outbound.pending_bytes > self.buffer_limit and self.writable:
            self._set_writable(False)

    def _send_now(self, data: bytes) -> int:
        return self.conn.send_data(self.stream_id, data)

    @property
    def pending_bytes(self) -> int:
        return self.outbound.pending_bytes

    def end_request(self, trailers: Headers | None = None) -> None:
        if self.closed or self.request_ended:
            return
        self.request_ended = True
        if not self.outbound.hold_end(trailers):
            self._send_end(trailers)

    def _send_end(self, trailers: Headers | None) -> None:
        if trailers:
            self.conn.send_headers(self.stream_id, encode_fields(None, trailers), True)
        else:
            self.conn.end_stream(self.stream_id)

    def flush_pending(self) -> None:
        """The upstream opened a window: send what waits, as far as it now allows."""
        if self.closed:
            return
        end_due = self.outbound.flush(self._send_now)
        if self.closed:
            return
        if end_due:
            self._send_end(self.outbound.trailers)
        if (
            not self.writable
            and self.conn.writable
            and self.outbound.pending_bytes <= self.buffer_limit // 2
        ):
            self._set_writable(True)

    def on_connection_writable(self, writable: bool) -> None:
        if writable and self.outbound.pending_bytes > self.buffer_limit:
            return  # still held by its own backlog
        if writable != self.writable:
            self._set_writable(writable)

    def _set_writable(self, writable: bool) -> None:
        self.writable = writable
        if self.sink is not None:
            self.sink.on_upstream_writable(writable)

    # -- the response direction's pace (called by the exchange) ------------------------------
    def pause_reading(self) -> None:
        self._blocked = True

    def resume_reading(self) -> None:
        self._blocked = False
        if self._owed and not self.closed and not self.response_ended:
            owed, self._owed = self._owed, 0
            self.conn.credit_stream(self.stream_id, owed)

    # -- the end (called by the exchange) ------------------------------------------------------
    def finish(self) -> None:
        """The exchange has the whole response. A request still being sent is cut off without
        error (RFC 9113 §8.1: the upstream answered before it needed the rest)."""
        self.sink = None
        if self.closed:
            return
        if not self.request_ended or self.outbound.end_held:
            self.conn.reset_stream(self.stream_id, ErrorCodes.NO_ERROR)
        self.release()

    def abort(self) -> None:
        """The exchange gave up on this try (client gone, timeout, retry): CANCEL it."""
        self.sink = None
        if self.closed:
            return
        self.conn.reset_stream(self.stream_id, ErrorCodes.CANCEL)
        self.release()

    def close(self) -> None:
        self.abort()

    def release(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.outbound.clear()
        self.conn.stream_released(self)

    # -- events (called by the connection) ---------------------------------------------------
    def on_head(self, fields: list[tuple[bytes, bytes]], ended: bool) -> None:
        sink = self.sink
        if sink is None:
            return
        status, raw = split_status(fields)
        if not 100 <= status <= 599:
            self.conn.reset_stream(self.stream_id, ErrorCodes.PROTOCOL_ERROR)
            self.on_reset(UpstreamProtocolError("upstream sent no valid :status"))
            return
        if 100 <= status < 200:
            sink.on_interim_response(status, raw)
            return
        sink.h2_upstream_ended = ended
        sink.on_response_head(status, raw, True)

    def on_data(self, data: bytes, flow_controlled: int, ended: bool) -> int:
        """Relay response bytes; returns how many to credit back to the stream's window now."""
        sink = self.sink
        if sink is not None and data:
            sink.on_response_body(data)
        if ended or self.closed:
            return 0
        if self._blocked:
            self._owed += flow_controlled
            return 0
        return flow_controlled

    def on_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        if self.sink is not None:
            self.sink.on_response_trailers(split_status(fields)[1])

    def on_end(self) -> None:
        self.response_ended = True
        sink = self.sink
        if sink is not None:
            sink.on_response_complete()
        self.finish()  # whether or not the exchange still wanted it

    def read_done(self) -> None:
        if self.sink is not None:
            self.sink.on_read_done()

    def on_reset(self, error: Exception | None) -> None:
        """The stream ended under the exchange: reset (`UpstreamReset`), refused as invalid
        (`UpstreamProtocolError`), or its connection lost (None)."""
        sink, self.sink = self.sink, None
        self.release()
        if sink is not None:
            sink.on_upstream_lost(error)
