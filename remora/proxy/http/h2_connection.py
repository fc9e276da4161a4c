"""h2's connection, with a received GOAWAY treated as RFC 9113 §6.8 means it.

A GOAWAY names the last stream its sender will still process: the streams up to it go on to
their end, and only later ones are refused. h2 4.4 instead closes its whole state machine on
receiving one (and drops what it had queued to send), so every frame after it, even the rest of
a response already under way, would be a protocol error. Servers drain that way all the time
(nginx at keepalive_requests, gRPC servers at max_connection_age, Envoy on drain), and so do
clients at shutdown. This subclass reports the GOAWAY and leaves the state open; its users stop
opening streams themselves. (It overrides h2's frame handler for GOAWAY: h2 is pinned, and
tests/proxy/upstream/test_h2_upstream.py and the downstream tests fail if that changes.)
"""

from __future__ import annotations

from h2.connection import H2Connection
from h2.errors import _error_code_from_int
from h2.events import ConnectionTerminated, Event
from hyperframe.frame import Frame, GoAwayFrame


class GracefulH2Connection(H2Connection):
    def send_within_windows(self, stream_id: int, data: bytes) -> tuple[int, int]:
        """Queue as much of `data` as the stream's and the connection's windows allow, in
        frames no larger than the peer accepts: (bytes queued, frames). Raises h2's errors
        for a stream that cannot take data; the rest of `data` is the caller's to keep."""
        size = min(len(data), self.local_flow_control_window(stream_id))
        frame = self.max_outbound_frame_size
        sent = frames = 0
        while sent < size:
            step = min(frame, size - sent)
            self.send_data(stream_id, data[sent : sent + step])
            sent += step
            frames += 1
        return sent, frames

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        event = ConnectionTerminated()
        event.error_code = _error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
