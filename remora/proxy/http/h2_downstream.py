"""The downstream side of the connection manager for HTTP/2 clients: one protocol per connection.

h2 (python-hyper) is the codec: it frames, parses, keeps HPACK state and enforces the protocol
and its windows. This module feeds it the socket's bytes, turns its events into streams, each
with an `Exchange` (the same router HTTP/1.1 uses), and writes what h2 queues once per read or
per upstream event. It adds what a proxy needs and h2 leaves to its user: per-stream credit
(see h2_stream), limits on what a client may make the proxy do for nothing (Envoy's flood
limits and premature-reset accounting for rapid reset), keepalive PINGs, and drain by GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from remora.proxy.addresses import address_string
from remora.proxy.http.exchange import Exchange
from remora.proxy.http.h2_connection import GracefulH2Connection
from remora.proxy.http.h2_stream import H2Stream
from remora.proxy.http.xfcc import ALWAYS_FORWARD_ONLY, FORWARD_PLAN, SANITIZE_PLAN
from remora.proxy.http.xfcc import plan as xfcc_plan

if TYPE_CHECKING:
    from remora.proxy.http.h1_codec import Headers
    from remora.proxy.http.listener import HttpListener
    from remora.proxy.tls.facts import TlsFacts

log = logging.getLogger("remora.proxy.http2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Rapid reset (CVE-2023-44487): Envoy's default accounting. Once a connection has opened this
# many streams, it is closed if at least half of them were reset by the client before their
# response began.
_PREMATURE_RESET_MIN_STREAMS = 500
_LINGER_SECONDS = 1.0
_CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=True,
    normalize_inbound_headers=True,
    validate_outbound_headers=True,
    normalize_outbound_headers=True,
)


class H2DownstreamConnection(asyncio.Protocol):
    def __init__(self, listener: HttpListener, counted: bool = False) -> None:
        """`counted`: an HTTP/1.1 connection that found the preface (or ALPN `h2`) has counted
        the accept already (downstream_cx_total and _active, TLS, the listener's own)."""
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.hcm = hcm = listener.hcm
        self.options = options = hcm.http2
        self.stats = listener.stats
        self.h2stats = listener.h2_stats
        self.scheme = listener.scheme
        self.tls_facts: TlsFacts | None = None
        self.xfcc = SANITIZE_PLAN
        self.transport: asyncio.Transport | None = None
        self.remote_ip = ""
        self.remote_address = ""
        self.counted = counted
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        self.writable = True
        self.goaway_sent = False
        self.goaway_received = False
        self.last_activity = self.opened_at = time.monotonic()
        self._in_read = False
        self._flush_pending = False
        self._conn_credit = 0
        self._streams_opened = 0
        self._premature_resets = 0
        self._empty_frames = 0
        self._priority_frames = 0
        self._window_updates = 0
        self._data_frames_sent = 0
        # Frames queued while the client is not reading (the socket's buffer is full): all of
        # them, and the control frames among them (PING and SETTINGS acks, RST_STREAM).
        self._frames_queued = 0
        self._control_frames_queued = 0
        self._ping_sent_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.h2 = conn = GracefulH2Connection(config=_CONFIG)
        # The values the first SETTINGS frame carries are the settings' current ones.
        conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: options.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: options.initial_stream_window_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: hcm.max_request_headers_bytes,
                SettingCodes.HEADER_TABLE_SIZE: options.hpack_table_size,
            },
        )
        # Enforced from the first HEADERS, not only once the client acknowledges the SETTINGS.
        conn.decoder.max_header_list_size = hcm.max_request_headers_bytes
        conn.decoder.max_allowed_table_size = options.hpack_table_size

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.listener.buffer_limit)
        peer = transport.get_extra_info("peername")
        if peer:
            self.remote_ip = str(peer[0])
            self.remote_address = address_string(str(peer[0]), int(peer[1]))
        self.listener.connections.add(self)
        stats = self.stats
        if not self.counted:
            stats.downstream_cx_total.inc()
            stats.downstream_cx_active.inc()
            if self.scheme == "https":
                stats.downstream_cx_ssl_total.inc()
                stats.downstream_cx_ssl_active.inc()
            self.listener.listener_stats.on_open()
        stats.downstream_cx_http2_total.inc()
        stats.downstream_cx_http2_active.inc()
        if self.scheme == "https":
            tls = transport.get_extra_info("tls")
            self.tls_facts = facts = tls.facts if tls is not None else None
            hcm = self.hcm
            self.xfcc = xfcc_plan(hcm.forward_client_cert, facts, hcm.client_cert_details)
        elif self.hcm.forward_client_cert == ALWAYS_FORWARD_ONLY:
            self.xfcc = FORWARD_PLAN
        conn = self.h2
        conn.initiate_connection()
        _refuse_excess_streams_ourselves(conn)
        extra = self.options.initial_connection_window_size - conn.inbound_flow_control_window
        if extra > 0:
            conn.increment_flow_control_window(extra)
        self.flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = time.monotonic()
        self.stats.downstream_cx_rx_bytes_total.inc(len(data))
        self._in_read = True
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
        if not self.writable:
            self._check_outbound()

    def _handle(self, event: object) -> None:
        if isinstance(event, DataReceived):
            self._on_data(event)
        elif isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_end()
        elif isinstance(event, WindowUpdated):
            self._on_window_update(event)
        elif isinstance(event, StreamReset):
            self._on_reset(event)
        elif isinstance(event, TrailersReceived):
            # Request trailers end the request (StreamEnded follows, and hands them on).
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.request.trailers = [
                    (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers or ()
                ]
        elif isinstance(event, PingReceived):
            self._count_control_frame()
        elif isinstance(event, PingAckReceived):
            self._ping_sent_at = None
        elif isinstance(event, RemoteSettingsChanged):
            self._count_control_frame()
            if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                self._flush_all_pending()
        elif isinstance(event, PriorityUpdated):
            self._priority_frames += 1
            limit = self.options.max_inbound_priority_frames_per_stream * (1 + self._streams_opened)
            if self._priority_frames > limit:
                self.h2stats.inbound_priority_frames_flood.inc()
                self._close_for(ErrorCodes.ENHANCE_YOUR_CALM, "inbound PRIORITY frame flood")
        elif isinstance(event, ConnectionTerminated):
            self._on_goaway()

    def eof_received(self) -> bool | None:
        return None  # HTTP/2 has no half-close of the connection: close it

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed and self.transport is None:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.listener.connections.discard(self)
        stats = self.stats
        stats.downstream_cx_active.dec()
        stats.downstream_cx_http2_active.dec()
        if self.scheme == "https":
            stats.downstream_cx_ssl_active.dec()
        self.listener.listener_stats.on_close()
        for stream in list(self.streams.values()):
            stream.on_connection_lost()
        self.streams.clear()
        self.transport = None

    def pause_writing(self) -> None:
        self.writable = False
        self._frames_queued = self._control_frames_queued = 0
        for stream in list(self.streams.values()):
            stream.on_connection_writable(False)

    def resume_writing(self) -> None:
        self.writable = True
        self._frames_queued = self._control_frames_queued = 0
        for stream in list(self.streams.values()):
            stream.on_connection_writable(True)

    # -- events ----------------------------------------------------------------------------
    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        if self.goaway_sent:
            # Past the GOAWAY's last stream: the client retries it elsewhere (RFC 9113 §6.8).
            self.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) >= self.options.max_concurrent_streams:
            # RFC 9113 §5.1.2: a stream error, so the others go on (a client may open streams
            # before it has read the SETTINGS that limit them).
            self.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self._streams_opened += 1
        hcm = self.hcm
        stream = H2Stream(self, stream_id, self.last_activity)
        request = stream.request
        method = path = authority = ""
        headers: Headers = []
        has_host = False
        too_many = False
        bad_length = False
        for raw_name, raw_value in event.headers or ():
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            if name[:1] == ":":
                if name == ":method":
                    method = value
                elif name == ":path":
                    path = value
                elif name == ":authority":
                    authority = value
                continue
            if name == "host":
                has_host = True
            elif name == "content-length":
                if not value.isdigit() or (
                    request.content_length is not None and request.content_length != int(value)
                ):
                    bad_length = True
                else:
                    request.content_length = int(value)
            headers.append((name, value))
        if len(headers) > hcm.max_headers_count:
            too_many = True
        if authority and not has_host:
            headers.insert(0, ("host", authority))
        request.method = method
        request.target = path
        request.headers = headers
        ended = event.stream_ended is not None
        if ended:
            request.complete = True
            request.content_length = None
        elif request.content_length is None:
            request.chunked = True  # a body of unknown length: chunked to an HTTP/1.1 upstream
        self.streams[stream_id] = stream
        self.h2stats.streams_active.inc()
        exchange = Exchange(stream, request)
        stream.active = exchange
        if too_many:
            self.stats.downstream_rq_too_large.inc()
            exchange.refuse(431, "")
        elif bad_length:
            self.stats.downstream_cx_protocol_error.inc()
            exchange.refuse(400, "Bad Request: invalid content-length")
        else:
            exchange.start()
        stream.arm_timer()

    def _on_data(self, event: DataReceived) -> None:
        length = event.flow_controlled_length or 0
        self._conn_credit += length
        data = event.data or b""
        if not data and event.stream_ended is None:
            self._empty_frames += 1
            if self._empty_frames > self.options.max_consecutive_inbound_frames_with_empty_payload:
                self.h2stats.inbound_empty_frames_flood.inc()
                self._close_for(ErrorCodes.ENHANCE_YOUR_CALM, "inbound empty frame flood")
            return
        self._empty_frames = 0
        stream_id = event.stream_id
        assert stream_id is not None
        stream = self.streams.get(stream_id)
        if stream is None:
            return  # answered and released already: its bytes only return connection credit
        credit = stream.on_data(data, length, event.stream_ended is not None)
        if credit:
            self.credit_stream(stream_id, credit)

    def _on_window_update(self, event: WindowUpdated) -> None:
        self._window_updates += 1
        options = self.options
        limit = 5 + 2 * (
            self._streams_opened
            + options.max_inbound_window_update_frames_per_data_frame_sent * self._data_frames_sent
        )
        if self._window_updates > limit:
            self.h2stats.inbound_window_update_frames_flood.inc()
            self._close_for(ErrorCodes.ENHANCE_YOUR_CALM, "inbound WINDOW_UPDATE frame flood")
            return
        if not event.stream_id:
            self._flush_all_pending()
            return
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.flush_pending()

    def _on_reset(self, event: StreamReset) -> None:
        self.h2stats.rx_reset.inc()
        stream_id = event.stream_id
        assert stream_id is not None
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if not stream.response_started:
            self._premature_resets += 1
            self.h2stats.premature_reset.inc()
        stream.on_reset()
        opened = self._streams_opened
        if opened >= _PREMATURE_RESET_MIN_STREAMS and self._premature_resets * 2 >= opened:
            log.info(
                "closing HTTP/2 connection from %s: %d of %d streams reset before a response",
                self.remote_address,
                self._premature_resets,
                opened,
            )
            self._close_for(ErrorCodes.ENHANCE_YOUR_CALM, "too many premature resets")

    def _on_goaway(self) -> None:
        """The client is done with the connection (RFC 9113 §6.8): its open streams are still
        answered, and the connection closes after the last one."""
        self.goaway_received = True
        if not self.streams:
            self._close_transport()

    def _count_control_frame(self) -> None:
        if not self.writable:
            self._control_frames_queued += 1
            self._frames_queued += 1

    def _check_outbound(self) -> bool:
        """Envoy's outbound flood limits, on what waits for a client that does not read."""
        options = self.options
        if self._control_frames_queued > options.max_outbound_control_frames:
            self.h2stats.outbound_control_flood.inc()
            self._close_for(ErrorCodes.ENHANCE_YOUR_CALM, "outbound control frame flood")
            return False
        if self._frames_queued > options.max_outbound_frames:
            self.h2stats.outbound_flood.inc()
            self._close_for(ErrorCodes.ENHANCE_YOUR_CALM, "outbound frame flood")
            return False
        return True

    def _flush_all_pending(self) -> None:
        for stream in list(self.streams.values()):
            stream.flush_pending()

    # -- what streams call ------------------------------------------------------------------
    def send_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        try:
            self.h2.send_headers(stream_id, fields, end_stream=end)
        except H2Error as exc:
            self._stream_failed(stream_id, exc)
            return
        if not self.writable:
            self._frames_queued += 1
            if not self._check_outbound():
                return
        self.flush()

    def send_data(self, stream_id: int, data: bytes) -> int:
        """Send as much of `data` as the windows allow, in frames h2 accepts; returns how much
        went out."""
        try:
            sent, frames = self.h2.send_within_windows(stream_id, data)
        except H2Error as exc:
            self._stream_failed(stream_id, exc)
            return len(data)
        self._data_frames_sent += frames
        if not self.writable:
            self._frames_queued += frames
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
            self.h2stats.tx_reset.inc()
            self.stats.downstream_rq_tx_reset.inc()
        self._count_control_frame()
        self.flush()

    def credit_stream(self, stream_id: int, credit: int) -> None:
        try:
            self.h2.increment_flow_control_window(credit, stream_id=stream_id)
        except H2Error:
            return  # the stream closed meanwhile: its window no longer matters
        self.flush()

    def stream_released(self, stream: H2Stream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self.h2stats.streams_active.dec()
        if not self.streams:
            self.last_activity = time.monotonic()
            if self.goaway_sent or self.goaway_received:
                self._close_transport()
            else:
                self._arm_timer()

    def _stream_failed(self, stream_id: int, exc: H2Error) -> None:
        """h2 refused to send on a stream (it closed under us): drop the stream."""
        log.debug("HTTP/2 stream %d: %s", stream_id, exc)
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.release()

    def flush(self) -> None:
        """Hand what h2 has queued to the socket at the end of this turn of the event loop.
        An upstream read can produce a head, data and an end for several streams; they leave
        in one write, not one syscall each (that was a quarter of the CPU under h2load)."""
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
            self.stats.downstream_cx_tx_bytes_total.inc(len(data))
            transport.write(data)

    # -- errors, drain and close ------------------------------------------------------------
    def _protocol_error(self, exc: ProtocolError) -> None:
        self.stats.downstream_cx_protocol_error.inc()
        self.h2stats.rx_messaging_error.inc()
        log.debug("HTTP/2 protocol error from %s: %s", self.remote_address, exc)
        if "header" in str(exc).lower() and "size" in str(exc).lower():
            self.h2stats.header_overflow.inc()
        # h2 has queued its GOAWAY (PROTOCOL_ERROR or the code that applies) already.
        self.flush_now()
        for stream in list(self.streams.values()):
            stream.on_connection_lost()
        self._close_transport()

    def _close_for(self, code: ErrorCodes, why: str) -> None:
        log.debug("closing HTTP/2 connection from %s: %s", self.remote_address, why)
        with contextlib.suppress(H2Error):
            self.h2.close_connection(code)
        self.h2stats.goaway_sent.inc()
        self._in_read = False
        self.flush_now()
        for stream in list(self.streams.values()):
            stream.on_connection_lost()
        # A flood is not waited on: its GOAWAY goes out only if the socket takes it now.
        self._close_transport(abort=not self.writable)

    def _close_transport(self, abort: bool = False) -> None:
        """Close after what is queued has been written, unless `abort`; a client that does not
        read gets a second to, as Envoy's delayed_close_timeout."""
        transport = self.transport
        if transport is not None and not self.closed:
            self._in_read = False
            if not abort:
                self.flush_now()  # the last streams' ends may still wait for this turn's write
            self.closed = True
            if abort:
                transport.abort()
                return
            transport.close()
            self.loop.call_later(_LINGER_SECONDS, self._end_linger)

    def _end_linger(self) -> None:
        if self.transport is not None:  # still not closed: the client is not reading
            self.transport.abort()

    def drain(self) -> None:
        """Graceful shutdown (and max_connection_duration): GOAWAY names the last stream this
        connection will serve; those finish, later ones are refused, then the socket closes."""
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = True
        self.stats.downstream_cx_drain_close.inc()
        self.h2stats.goaway_sent.inc()
        # Written past h2, which closes its state machine on any GOAWAY it sends (so the open
        # streams could not be answered); this connection refuses later streams itself.
        self.flush_now()
        frame = GoAwayFrame(0, last_stream_id=self.h2.highest_inbound_stream_id)
        if self.transport is not None:
            self.transport.write(frame.serialize())
        if not self.streams:
            self._close_transport()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.abort()

    # -- connection timers: idle, age and keepalive ------------------------------------------
    def _next_deadline(self) -> tuple[float, str] | None:
        hcm = self.hcm
        candidates: list[tuple[float, str]] = []
        if not self.streams and hcm.idle_timeout is not None:
            candidates.append((self.last_activity + hcm.idle_timeout, "idle"))
        if hcm.max_connection_duration is not None and not self.goaway_sent:
            candidates.append((self.opened_at + hcm.max_connection_duration, "max_duration"))
        options = self.options
        if options.keepalive_interval is not None:
            if self._ping_sent_at is not None:
                candidates.append((self._ping_sent_at + options.keepalive_timeout, "ping_timeout"))
            else:
                candidates.append((self.last_activity + options.keepalive_interval, "ping"))
        return min(candidates) if candidates else None

    def _arm_timer(self) -> None:
        if self.closed:
            return
        deadline = self._next_deadline()
        if deadline is None:
            return
        at = deadline[0]
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        loop = self.loop
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + max(0.0, at - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        deadline = self._next_deadline()
        if deadline is None:
            return
        at, kind = deadline
        if at > time.monotonic():
            self._arm_timer()
            return
        if kind == "idle":
            self.stats.downstream_cx_idle_timeout.inc()
            self.drain()
        elif kind == "max_duration":
            self.stats.downstream_cx_max_duration_reached.inc()
            self.drain()
        elif kind == "ping":
            self._ping_sent_at = time.monotonic()
            self.h2.ping(int(self._ping_sent_at * 1e6).to_bytes(8, "big"))
            self.flush()
        elif kind == "ping_timeout":
            self.h2stats.keepalive_timeout.inc()
            self._close_for(ErrorCodes.NO_ERROR, "keepalive PING not acknowledged")
            return
        self._arm_timer()


def _refuse_excess_streams_ourselves(conn: H2Connection) -> None:
    """Past the advertised SETTINGS_MAX_CONCURRENT_STREAMS, h2 raises a connection error, and
    from inside its HPACK decoding, so the connection cannot go on. RFC 9113 allows a stream
    error instead (REFUSED_STREAM), which is what Envoy sends and what a client racing the
    server's first SETTINGS needs. So h2's own limit is lifted once the SETTINGS frame with
    the real one is queued, and the connection refuses excess streams after decoding them.
    (h2 4.4 keeps a setting's current value first in a per-setting deque; pinned, and
    tests/proxy/http/test_h2_downstream.py fails if that changes.)"""
    values = conn.local_settings._settings
    values[SettingCodes.MAX_CONCURRENT_STREAMS] = deque([2**31 - 1])
