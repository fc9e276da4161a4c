"""A raw HTTP/2 client for tests: h2's client state machine over an asyncio socket, with every
frame under the test's control (what it sends, whether it credits windows back, whether it
reads at all), so misbehaving clients can be played as well as polite ones."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _text(headers: list[tuple[bytes, bytes]] | None) -> list[tuple[str, str]]:
    return [(n.decode(), v.decode()) for n, v in headers or []]


class H2Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.responses: dict[int, Response] = {}
        self.auto_credit = True  # credit every DATA frame back at once (a reader that keeps up)
        self.goaway: ConnectionTerminated | None = None
        self.closed = False
        self.events: list[Event] = []

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> H2Client:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        client.conn.initiate_connection()
        client.flush()
        return client

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        authority: str = "test.local",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        end: bool = True,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        fields = [
            (":method", method),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            *(headers or []),
        ]
        self.conn.send_headers(stream_id, fields, end_stream=end and body is None)
        self.responses[stream_id] = Response()
        if body is not None:
            self.send_body(stream_id, body, end=end)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        """Send as much as the windows allow now; the rest is the caller's to send later."""
        frame = self.conn.max_outbound_frame_size
        offset = 0
        while offset < len(body):
            window = self.conn.local_flow_control_window(stream_id)
            if window <= 0:
                raise BufferError(f"window closed after {offset} bytes")
            step = min(frame, window, len(body) - offset)
            self.conn.send_data(stream_id, body[offset : offset + step])
            offset += step
        if end:
            self.conn.end_stream(stream_id)
        self.flush()

    async def pump(self, timeout: float = 5.0) -> bool:
        """Read once and handle what came; False when the connection closed."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return True
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            self._handle(event)
        self.flush()
        return True

    def _handle(self, event: Event) -> None:
        if isinstance(event, ResponseReceived):
            response = self.responses.setdefault(event.stream_id or 0, Response())
            headers = _text(event.headers)  # type: ignore[arg-type]
            response.status = int(dict(headers)[":status"])
            response.headers = [(n, v) for n, v in headers if not n.startswith(":")]
        elif isinstance(event, DataReceived):
            response = self.responses.setdefault(event.stream_id or 0, Response())
            response.body += event.data or b""
            if self.auto_credit and event.flow_controlled_length:
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id or 0
                )
        elif isinstance(event, TrailersReceived):
            self.responses[event.stream_id or 0].trailers = _text(event.headers)  # type: ignore[arg-type]
        elif isinstance(event, StreamEnded):
            self.responses[event.stream_id or 0].ended = True
        elif isinstance(event, StreamReset):
            self.responses.setdefault(event.stream_id or 0, Response()).reset = int(
                event.error_code or 0
            )
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event

    async def until(self, condition: object, timeout: float = 10.0) -> None:
        """Pump until `condition()` holds (or the connection closes, or time runs out)."""
        check = condition  # a callable returning bool
        deadline = time.monotonic() + timeout
        while not check():  # type: ignore[operator]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not reached")
            if not await self.pump(left):
                return

    async def response(self, stream_id: int, timeout: float = 10.0) -> Response:
        response = self.responses[stream_id]
        await self.until(lambda: response.ended or response.reset is not None, timeout)
        return response

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
