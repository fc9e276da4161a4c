"""A small HTTP/2 origin for the upstream tests, on the h2 library, that can misbehave on request.

Real servers (nginx, a second remora) cover the polite paths; this one does what they do only
under load or at shutdown, on cue from the request path:

- `/echo`: a JSON body with the request's fields (pseudo-headers too) and body size;
- `/delay/<ms>`: answer after a while (for concurrency);
- `/bytes/<n>`: n bytes of body, sent as the proxy's windows allow;
- `/trailers`: a body, then trailers (`grpc-status: 0`); `/trailers-only`: one HEADERS with
  END_STREAM carrying the status (gRPC's trailers-only response);
- `/refuse`: RST_STREAM REFUSED_STREAM; `/reset-after-head`: a head, some body, then a reset;
- `/goaway/<ms>`: GOAWAY naming this stream as the last, then the answer after ms.

It counts connections, requests and the most streams it saw open at once on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    trailers: dict[str, str] = field(default_factory=dict)


class _Connection(asyncio.Protocol):
    def __init__(self, server: H2Origin) -> None:
        self.server = server
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, Seen] = {}
        self.windows: dict[int, asyncio.Event] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.goaway_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1
        self.server.open.add(self)
        # As initial values, so the first SETTINGS frame carries them.
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: self.server.window,
            },
        )
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)
        for task in self.tasks:
            task.cancel()
        for event in self.windows.values():
            event.set()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                headers = dict(event.headers or [])  # type: ignore[arg-type]
                self.requests[event.stream_id] = Seen(
                    headers.get(":method", ""), headers.get(":path", ""), headers
                )
                self.server.requests += 1
                self.server.peak = max(self.server.peak, len(self.requests))
            elif isinstance(event, DataReceived):
                seen = self.requests.get(event.stream_id)
                if seen is not None:
                    seen.body += event.data
                if event.flow_controlled_length and not self.server.hold_request_credit:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, TrailersReceived):
                seen = self.requests.get(event.stream_id)
                if seen is not None:
                    seen.trailers = dict(event.headers or [])  # type: ignore[arg-type]
            elif isinstance(event, StreamEnded):
                seen = self.requests.get(event.stream_id)
                if seen is not None:
                    self.server.seen.append(seen)
                    task = asyncio.ensure_future(self.answer(event.stream_id, seen))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            elif isinstance(event, StreamReset):
                self.requests.pop(event.stream_id, None)
                self.server.resets_received.append(event.error_code)
                window = self.windows.get(event.stream_id)
                if window is not None:
                    window.set()
            elif isinstance(event, WindowUpdated):
                for window in self.windows.values():
                    window.set()
            elif isinstance(event, ConnectionTerminated):
                self.server.goaways_received += 1
        self.flush()

    async def answer(self, stream_id: int, seen: Seen) -> None:
        path = seen.path.split("?")[0]
        parts = path.strip("/").split("/")
        h2 = self.h2
        try:
            if parts[0] == "delay":
                await asyncio.sleep(int(parts[1]) / 1000)
            if parts[0] == "refuse":
                h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            elif parts[0] == "trailers-only":
                h2.send_headers(
                    stream_id,
                    [
                        (":status", "200"),
                        ("content-type", "application/grpc"),
                        ("grpc-status", "7"),
                    ],
                    end_stream=True,
                )
            elif parts[0] == "trailers":
                h2.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain")])
                h2.send_data(stream_id, b"body")
                h2.send_headers(
                    stream_id, [("grpc-status", "0"), ("x-trailer", "yes")], end_stream=True
                )
            elif parts[0] == "reset-after-head":
                h2.send_headers(stream_id, [(":status", "200")])
                h2.send_data(stream_id, b"partial")
                self.flush()
                await asyncio.sleep(0.05)
                h2.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            elif parts[0] == "goaway":
                if not self.goaway_sent:
                    self.goaway_sent = True
                    frame_last = stream_id
                    # A graceful GOAWAY: this stream (and earlier ones) will still be answered.
                    h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=frame_last)
                    self.server.goaways_sent += 1
                    # h2 closes its own state on a GOAWAY it sends; reopen it so the streams it
                    # covers can still be answered, as a server draining gracefully does.
                    h2.state_machine.state = _server_open()
                self.flush()
                await asyncio.sleep(int(parts[1]) / 1000)
                await self.send_body(stream_id, b"after goaway", [(":status", "200")])
            elif parts[0] == "bytes":
                await self.send_body(stream_id, b"b" * int(parts[1]), [(":status", "200")])
            else:
                body = json.dumps(
                    {
                        "method": seen.method,
                        "path": seen.path,
                        "headers": seen.headers,
                        "body_bytes": len(seen.body),
                        "trailers": seen.trailers,
                    }
                ).encode()
                await self.send_body(
                    stream_id,
                    body,
                    [
                        (":status", "200"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ],
                )
        except H2Error:
            pass
        finally:
            self.requests.pop(stream_id, None)
            self.flush()
            if self.goaway_sent and not self.requests and self.transport is not None:
                self.transport.close()

    async def send_body(self, stream_id: int, body: bytes, head: list[tuple[str, str]]) -> None:
        self.h2.send_headers(stream_id, head)
        self.flush()
        window = self.windows.setdefault(stream_id, asyncio.Event())
        sent = 0
        while sent < len(body):
            room = min(
                self.h2.local_flow_control_window(stream_id),
                self.h2.max_outbound_frame_size,
                len(body) - sent,
            )
            if room <= 0:
                window.clear()
                await window.wait()
                if stream_id not in self.requests or self.transport is None:
                    return
                continue
            self.h2.send_data(stream_id, body[sent : sent + room])
            sent += room
            self.flush()
            await asyncio.sleep(0)
        self.h2.end_stream(stream_id)
        self.windows.pop(stream_id, None)


def _server_open():  # type: ignore[no-untyped-def]
    from h2.connection import ConnectionState

    return ConnectionState.SERVER_OPEN


class H2Origin:
    def __init__(self, max_streams: int = 100, window: int = 65535) -> None:
        self.max_streams = max_streams
        self.window = window
        self.hold_request_credit = False  # never credit request bytes back (a stalled reader)
        self.connections = 0
        self.requests = 0
        self.peak = 0
        self.goaways_sent = 0
        self.goaways_received = 0
        self.resets_received: list[int] = []
        self.seen: list[Seen] = []
        self.open: set[_Connection] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> H2Origin:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.abort()
        with contextlib.suppress(Exception):
            await self.server.wait_closed()
