"""One HTTP/2 connection to an upstream host, carrying many exchanges' streams at once.

h2 (python-hyper) is the codec, as on the downstream side. This module feeds it the socket's
bytes, hands each stream's events to that stream (`h2_upstream_stream`), writes what h2 queues
once per read or per exchange event, and tells its pool (`h2_pool`) how many more streams it
can take: the upstream's SETTINGS_MAX_CONCURRENT_STREAMS (the connection takes no stream
before those first SETTINGS arrive), the cluster's own cap, and max_requests_per_connection.
A GOAWAY from the upstream stops new streams; those it covers finish, the rest fail as
refused (safe to retry elsewhere), and the socket closes once the last stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, cast

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    PingAckReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings

from remora.proxy.http.h2_connection import GracefulH2Connection
from remora.proxy.upstream.config import PROTOCOL_AUTO
from remora.proxy.upstream.h1_connection import UpstreamProtocolError
from remora.proxy.upstream.h2_upstream_stream import H2UpstreamStream, UpstreamReset

if TYPE_CHECKING:
    from remora.proxy.http.exchange import Exchange
    from remora.proxy.upstream.h2_pool import H2HostPool

log = logging.getLogger("remora.upstream.http2")

_CONFIG = H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_inbound_headers=True,
    normalize_inbound_headers=True,
    validate_outbound_headers=True,
    normalize_outbound_headers=True,
)


class AlpnChoseHttp1(Exception):
    """auto_config: the upstream's ALPN answer was not h2, so the socket speaks HTTP/1.1."""


# RFC 9113 §6.5.2's advice for a peer whose limit is not known yet: expect at least this many.
STREAMS_BEFORE_SETTINGS = 100


class H2UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: H2HostPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        config = pool.cluster.config
        self.options = options = config.http2
        stats = pool.cluster.http2_stats
        assert stats is not None  # made for every cluster that speaks HTTP/2
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2UpstreamStream] = {}
        # Resolved when the upstream's first SETTINGS arrive (None: usable now, with its stream
        # limit known) or the connection failed first (the reason). RFC 9113 §3.4 makes that
        # frame the server's first, so waiting for it costs no round trip, and it proves the
        # peer speaks HTTP/2. A future with a result needs nobody to retrieve it.
        self.ready: asyncio.Future[Exception | None] = self.loop.create_future()
        self.reserved = 0  # exchanges waiting for this connection to come up
        self.closed = False
        self.draining = False  # no new streams: GOAWAY, age, max requests, or a retired pool
        self.writable = True
        self.requests = 0
        self.settings_received = False
        self.expiry: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_sent_at: float | None = None
        self.last_activity = time.monotonic()
        self._in_read = False
        self._flush_pending = False
        self._conn_credit = 0
        self._touched: list[H2UpstreamStream] = []
        self.h2 = conn = GracefulH2Connection(config=_CONFIG)
        conn.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: options.initial_stream_window_size,
                SettingCodes.HEADER_TABLE_SIZE: options.hpack_table_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: config.max_response_headers_bytes,
            },
        )
        conn.decoder.max_header_list_size = config.max_response_headers_bytes
        conn.decoder.max_allowed_table_size = options.hpack_table_size

    # -- what the pool reads -------------------------------------------------------------------
    def stream_limit(self) -> int:
        """How many streams this connection may carry at once (its SETTINGS have come)."""
        return min(
            self.h2.remote_settings.max_concurrent_streams, self.options.max_concurrent_streams
        )

    def capacity(self) -> int:
        if self.closed or self.draining or not self.settings_received:
            return 0
        room = self.stream_limit() - len(self.streams)
        limit = self.pool.cluster.config.max_requests_per_connection
        if limit is not None:
            room = min(room, limit - self.requests)
        return max(room, 0)

    def open_stream(self, sink: Exchange) -> H2UpstreamStream:
        stream_id = self.h2.get_next_available_stream_id()
        stream = H2UpstreamStream(self, stream_id, sink)
        self.streams[stream_id] = stream
        self.requests += 1
        self.stats.streams_active.inc()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        limit = self.pool.cluster.config.max_requests_per_connection
        if limit is not None and self.requests >= limit:
            self.pool.cluster.stats.upstream_cx_max_requests.inc()
            self.draining = True
        return stream

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        pool = self.pool
        if pool.cluster.config.upstream_protocol == PROTOCOL_AUTO:
            ssl_object = transport.get_extra_info("ssl_object")
            chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            pool.host.alpn_h2 = chosen == "h2"
            if chosen != "h2":
                # No preface: the pool hands this socket to the host's HTTP/1.1 pool.
                self.ready.set_result(AlpnChoseHttp1(chosen or "none"))
                return
        transport.set_write_buffer_limits(high=pool.buffer_limit)
        conn = self.h2
        conn.initiate_connection()
        extra = self.options.initial_connection_window_size - conn.inbound_flow_control_window
        if extra > 0:
            conn.increment_flow_control_window(extra)
        self.flush()
        self._arm_ping()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = time.monotonic()
        self._ping_sent_at = None  # any bytes show the peer alive
        self._in_read = True
        touched = self._touched
        try:
            try:
                events = self.h2.receive_data(data)
            except ProtocolError as exc:
                self._in_read = False
                self._protocol_error(exc)
                return
            for event in events:
                self._handle(event)
                if self.closed:
                    return
            if self._conn_credit:
                credit, self._conn_credit = self._conn_credit, 0
                self.h2.increment_flow_control_window(credit)
        finally:
            self._in_read = False
        self.flush_now()
        if touched:
            self._touched = []
            for stream in touched:
                stream.read_done()

    def _handle(self, event: object) -> None:
        if isinstance(event, DataReceived):
            length = event.flow_controlled_length or 0
            self._conn_credit += length
            stream = self._stream(event.stream_id)
            if stream is not None:
                credit = stream.on_data(event.data or b"", length, event.stream_ended is not None)
                if credit:
                    self.credit_stream(stream.stream_id, credit)
        elif isinstance(event, ResponseReceived):
            stream = self._stream(event.stream_id)
            if stream is not None:
                stream.on_head(event.headers or [], event.stream_ended is not None)
        elif isinstance(event, StreamEnded):
            stream = self._stream(event.stream_id)
            if stream is not None:
                stream.on_end()
        elif isinstance(event, TrailersReceived):
            stream = self._stream(event.stream_id)
            if stream is not None:
                stream.on_trailers(event.headers or [])
        elif isinstance(event, InformationalResponseReceived):
            stream = self._stream(event.stream_id)
            if stream is not None:
                stream.on_head(event.headers or [], False)
        elif isinstance(event, WindowUpdated):
            if not event.stream_id:
                for stream in list(self.streams.values()):
                    stream.flush_pending()
            else:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.flush_pending()
        elif isinstance(event, StreamReset):
            self._on_reset(event)
        elif isinstance(event, RemoteSettingsChanged):
            first = not self.settings_received
            self.settings_received = True
            self.pool.peer_limit = self.h2.remote_settings.max_concurrent_streams
            if not self.ready.done():
                self.ready.set_result(None)
            if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                for stream in list(self.streams.values()):
                    stream.flush_pending()
            if first or SettingCodes.MAX_CONCURRENT_STREAMS in event.changed_settings:
                self.pool.capacity_changed()
        elif isinstance(event, ConnectionTerminated):
            self._on_goaway(event)
        elif isinstance(event, PingAckReceived):
            self._ping_sent_at = None

    def _stream(self, stream_id: int | None) -> H2UpstreamStream | None:
        """The stream an event is for, noted so that it hears when the read is done."""
        stream = self.streams.get(stream_id or 0)
        if stream is not None and stream not in self._touched:
            self._touched.append(stream)
        return stream

    def _on_reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id or 0)
        if stream is None:
            return
        self.stats.rx_reset.inc()
        code = event.error_code
        refused = code == ErrorCodes.REFUSED_STREAM
        name = code.name if isinstance(code, ErrorCodes) else str(code)
        reason = "remote refused stream reset" if refused else f"remote reset ({name})"
        stream.on_reset(UpstreamReset(reason, refused))

    def _on_goaway(self, event: ConnectionTerminated) -> None:
        """RFC 9113 §6.8: streams up to `last_stream_id` may still complete; later ones were
        never processed and may be retried elsewhere."""
        self.draining = True
        self.pool.cluster.stats.upstream_cx_close_notify.inc()
        last = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
        for stream_id, stream in list(self.streams.items()):
            if stream_id > last:
                stream.on_reset(UpstreamReset("remote refused stream reset", refused=True))
        self.pool.capacity_changed()
        if not self.streams:
            self.close()

    def eof_received(self) -> bool | None:
        return None  # HTTP/2 has no half-close of the connection: close it

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed and self.transport is None:
            return
        self.closed = True
        self.transport = None
        self._cancel_timers()
        if not self.ready.done():
            self.ready.set_result(exc or ConnectionResetError("closed before its HTTP/2 SETTINGS"))
        self.pool.on_connection_closed(self)
        # The connection itself went (Envoy's UC, "connection termination"), not a stream reset.
        for stream in list(self.streams.values()):
            stream.on_reset(None)
        self.streams.clear()

    def pause_writing(self) -> None:
        self.writable = False
        for stream in list(self.streams.values()):
            stream.on_connection_writable(False)

    def resume_writing(self) -> None:
        self.writable = True
        for stream in list(self.streams.values()):
            stream.on_connection_writable(True)

    # -- what streams call ------------------------------------------------------------------
    def send_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        try:
            self.h2.send_headers(stream_id, fields, end_stream=end)
        except H2Error as exc:
            self._stream_failed(stream_id, exc)
            return
        self.flush()

    def send_data(self, stream_id: int, data: bytes) -> int:
        """Send as much of `data` as the windows allow; returns how much went out."""
        try:
            sent, _ = self.h2.send_within_windows(stream_id, data)
        except H2Error as exc:
            self._stream_failed(stream_id, exc)
            return len(data)
        if sent:
            self.flush()
        return sent

    def end_stream(self, stream_id: int) -> None:
        try:
            self.h2.end_stream(stream_id)
        except H2Error as exc:
            self._stream_failed(stream_id, exc)
            return
        self.flush()

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except H2Error:
            return  # already closed on both sides: nothing to reset
        if code != ErrorCodes.NO_ERROR:
            self.stats.tx_reset.inc()
        self.flush()

    def credit_stream(self, stream_id: int, credit: int) -> None:
        try:
            self.h2.increment_flow_control_window(credit, stream_id=stream_id)
        except H2Error:
            return  # the stream closed meanwhile
        self.flush()

    def stream_released(self, stream: H2UpstreamStream) -> None:
        if self.streams.pop(stream.stream_id, None) is None:
            return
        self.stats.streams_active.dec()
        if self.closed:
            return
        if not self.streams:
            self.last_activity = time.monotonic()
            if self.draining:
                self.close()
                return
            self._arm_idle()
        self.pool.stream_freed(self)

    def _stream_failed(self, stream_id: int, exc: H2Error) -> None:
        """h2 refused to send on a stream (a header it will not encode, a stream it closed)."""
        log.debug("HTTP/2 upstream stream %d: %s", stream_id, exc)
        stream = self.streams.get(stream_id)
        if stream is not None:
            with contextlib.suppress(H2Error):
                self.h2.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            stream.on_reset(UpstreamProtocolError(f"cannot send to the upstream: {exc}"))

    def flush(self) -> None:
        """Write what h2 has queued at the end of this turn of the event loop, so the requests
        one client read starts leave in one write (as on the downstream side)."""
        if self._in_read or self._flush_pending or self.transport is None:
            return  # data_received writes once, after all the read's events
        self._flush_pending = True
        self.loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_pending = False
        transport = self.transport
        if transport is None:
            return
        data = self.h2.data_to_send()
        if data:
            transport.write(data)

    # -- errors, drain and close ------------------------------------------------------------
    def _protocol_error(self, exc: ProtocolError) -> None:
        self.stats.rx_messaging_error.inc()
        log.debug("HTTP/2 protocol error from upstream %s: %s", self.pool.host, exc)
        self.flush_now()  # h2 has queued its GOAWAY
        error = UpstreamProtocolError(f"invalid HTTP/2 from upstream: {exc}")
        for stream in list(self.streams.values()):
            stream.on_reset(error)
        self.abort()

    def drain(self) -> None:
        """No new streams; the connection closes when its last stream ends."""
        self.draining = True
        if not self.streams:
            self.close()

    def close(self) -> None:
        """A GOAWAY saying nothing more is coming, then the socket closes."""
        if self.closed:
            return
        with contextlib.suppress(H2Error):
            self.h2.close_connection()
        self.stats.goaway_sent.inc()
        self.flush_now()
        self.draining = True
        transport = self.transport
        if transport is not None:
            transport.close()
        else:
            self.closed = True

    def abort(self) -> None:
        self.draining = True
        if self.transport is not None:
            self.transport.abort()
        else:
            self.closed = True

    # -- timers: idle and keepalive ----------------------------------------------------------
    def _cancel_timers(self) -> None:
        for timer in (self.expiry, self._idle_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self.expiry = self._idle_timer = self._ping_timer = None

    def _arm_idle(self) -> None:
        timeout = self.pool.cluster.config.idle_timeout
        if timeout is not None and self._idle_timer is None:
            self._idle_timer = self.loop.call_later(timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        if not self.streams and not self.closed:
            self.pool.cluster.stats.upstream_cx_idle_timeout.inc()
            self.close()

    def _arm_ping(self) -> None:
        interval = self.options.keepalive_interval
        if interval is not None and not self.closed:
            self._ping_timer = self.loop.call_later(interval, self._on_ping_timer)

    def _on_ping_timer(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        options = self.options
        now = time.monotonic()
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= options.keepalive_timeout:
                self.stats.keepalive_timeout.inc()
                log.info("HTTP/2 upstream %s: keepalive PING not acknowledged", self.pool.host)
                self.abort()
                return
            self._ping_timer = self.loop.call_later(
                self._ping_sent_at + options.keepalive_timeout - now, self._on_ping_timer
            )
            return
        interval = options.keepalive_interval
        assert interval is not None
        if now - self.last_activity < interval:
            self._ping_timer = self.loop.call_later(
                self.last_activity + interval - now, self._on_ping_timer
            )
            return
        self._ping_sent_at = now
        self.h2.ping(int(now * 1e6).to_bytes(8, "big"))
        self.flush()
        self._ping_timer = self.loop.call_later(options.keepalive_timeout, self._on_ping_timer)
