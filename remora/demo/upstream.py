"""A small, correct, streaming HTTP/1.1 server: the upstream of `remora demo` and the proxy's tests.

It exists so that proxy behaviour can be exercised against a peer whose every edge is known:
pipelining, chunked and length-delimited bodies, HTTP/1.0, HEAD, `Expect: 100-continue`, upgrades,
slow responses and huge ones. Parsing is httptools' (llhttp); this module only decides what to
answer and when.

The design keeps memory bounded whatever the client does:
- request bodies are counted as they arrive, only the first `BODY_SAMPLE` bytes are kept;
- responses are produced in request order, one at a time, and the next one starts only while the
  transport accepts writes (`pause_writing`/`resume_writing`), so a client that stops reading
  stops the server rather than filling its buffer;
- `/bytes/N` and `/chunked/N` generate 64 KiB at a time, driven by the same flow control;
- a client that pipelines faster than it reads is paused (`pause_reading`) past `MAX_PIPELINE`.
There is no task per request: everything runs in protocol callbacks, plus a timer for `/delay`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import cast

import httptools

from remora.proxy.http.h1_codec import CLOSED_REQUEST_PARSER

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
CHUNK_SIZE = 64 * 1024
# Body byte i of /bytes/N and /chunked/N is ALPHABET[i % 64]; 64 divides the chunk size, so every
# chunk is a prefix of this one constant and clients can verify content cheaply.
CHUNK = ALPHABET * (CHUNK_SIZE // len(ALPHABET))
BODY_SAMPLE = 4096
MAX_PIPELINE = 64
MAX_DELAY_MS = 600_000
MAX_UPGRADE_BUFFER = 1024 * 1024
_WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REASONS = {status.value: status.phrase for status in HTTPStatus}


def websocket_accept(key: str) -> str:
    """RFC 6455 §4.2.2: base64(SHA-1(key + GUID))."""
    digest = hashlib.sha1((key + _WEBSOCKET_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def pattern_bytes(start: int, length: int) -> bytes:
    """The bytes /bytes/N sends at offsets [start, start + length): for tests that verify bodies."""
    return bytes(ALPHABET[(start + i) % len(ALPHABET)] for i in range(length))


class _Request:
    """One request as parsed so far; only a bounded sample of its body is kept."""

    __slots__ = (
        "body_bytes",
        "body_sample",
        "complete",
        "continue_sent",
        "expects_continue",
        "headers",
        "headers_done",
        "keep_alive",
        "method",
        "upgrade",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.url = bytearray()
        self.headers: list[tuple[str, str]] = []
        self.method = ""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.headers_done = False
        self.expects_continue = False
        self.continue_sent = False
        self.complete = False
        self.body_bytes = 0
        self.body_sample = bytearray()

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _ParseError:
    """Queued in place of a request that could not be parsed: answered with 400, then close."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Stream:
    """Progress of a generated /bytes or /chunked body."""

    __slots__ = ("chunked", "remaining", "request")

    def __init__(self, request: _Request, remaining: int, chunked: bool) -> None:
        self.request = request
        self.remaining = remaining
        self.chunked = chunked


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, honours flow control."""

    def __init__(self, server: DemoUpstream) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[_Request | _ParseError] = deque()
        self._current: _Request | None = None
        self._active: _Request | None = None
        self._stream: _Stream | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._parsing = True
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._closing = False
        self._advancing = False  # re-entry guard: a response finishing inside _advance
        self._upgrade_pending: bytearray | None = None  # bytes after an upgrade, before the 101
        self._echo = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        self.server.connections_accepted += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stream = None
        self._queue.clear()
        self.server.connections.discard(self)
        self._parser = CLOSED_REQUEST_PARSER  # no cycle through the parser's callbacks
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._echo:
            self._write(data)
            return
        if self._upgrade_pending is not None:
            self._upgrade_pending += data
            if len(self._upgrade_pending) > MAX_UPGRADE_BUFFER:
                self._pause_reading()
            return
        if not self._parsing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._parsing = False
            self._upgrade_pending = bytearray(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            self._parsing = False
            if self._current is not None and self._queue and self._queue[-1] is self._current:
                self._queue.pop()
            self._current = None
            self._queue.append(_ParseError(str(exc) or type(exc).__name__))
        if len(self._queue) > MAX_PIPELINE:
            self._pause_reading()
        self._advance()

    def eof_received(self) -> bool:
        # Half-closed clients (HTTP/1.0 tools) still get their answers; close once they are out.
        self._eof = True
        self._parsing = False
        if self._current is not None and not self._current.complete:
            if self._queue and self._queue[-1] is self._current:
                self._queue.pop()
            self._current = None
        self._advance()
        return True

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._echo:
            self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._echo:
            self._resume_reading()
        elif self._stream is not None:
            self._pump_stream()
        else:
            self._advance()

    # --- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._current = _Request()
        self._queue.append(self._current)

    def on_url(self, url: bytes) -> None:
        assert self._current is not None
        self._current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        request.method = self._parser.get_method().decode("latin-1")
        request.version = self._parser.get_http_version()
        request.keep_alive = bool(self._parser.should_keep_alive())
        request.upgrade = bool(self._parser.should_upgrade())
        expect = request.header("expect")
        has_body = request.header("transfer-encoding") is not None or request.header(
            "content-length"
        ) not in (None, "0")
        request.expects_continue = (
            has_body and expect is not None and expect.lower() == "100-continue"
        )
        request.headers_done = True
        if request.expects_continue and self._queue and self._queue[0] is request:
            # Only at the head of the line: a 100 must not land inside an earlier response.
            self._send_continue(request)

    def on_body(self, body: bytes) -> None:
        request = self._current
        assert request is not None
        request.body_bytes += len(body)
        room = BODY_SAMPLE - len(request.body_sample)
        if room > 0:
            request.body_sample += body[:room]

    def on_message_complete(self) -> None:
        request = self._current
        assert request is not None
        request.complete = True
        self.server.body_bytes_received += request.body_bytes
        self._current = None
        if not request.keep_alive:
            # Nothing after a closing request is answered; don't parse it either.
            self._parsing = False

    # --- response scheduling -----------------------------------------------------------------

    def _advance(self) -> None:
        """Start responses, in order, while nothing is in flight and the client is reading."""
        if self._advancing:
            return  # the outer call's loop picks up where this one would start
        self._advancing = True
        try:
            self._advance_queue()
        finally:
            self._advancing = False

    def _advance_queue(self) -> None:
        while self._active is None and self._queue and not self._closing:
            if self._write_paused:
                return
            head = self._queue[0]
            if isinstance(head, _ParseError):
                self._queue.popleft()
                self._error_response(head.reason)
                return
            if not head.complete:
                if head.expects_continue and head.headers_done and not head.continue_sent:
                    self._send_continue(head)
                return
            self._queue.popleft()
            self._start(head)
        if self._read_paused and len(self._queue) <= MAX_PIPELINE // 2 and not self._echo:
            self._resume_reading()
        if self._eof and self._active is None and not self._queue and not self._closing:
            self._close()

    def _finish(self, request: _Request, close: bool = False) -> None:
        """A response is fully written; close if either side asked for it."""
        self._active = None
        self.server.requests_served += 1
        if close or not request.keep_alive:
            self._close()

    def _start(self, request: _Request) -> None:
        try:
            url = httptools.parse_url(bytes(request.url))
        except httptools.HttpParserInvalidURLError:
            self._simple(request, 400, b"bad request target\n", close=True)
            return
        path = (url.path or b"/").decode("latin-1")
        query = (url.query or b"").decode("latin-1")
        if request.upgrade:
            if path == "/ws":
                self._switch_protocols(request)
            else:
                # The parser has stopped at the upgrade; answer, decline it, and close.
                self._echo_response(request, path, query, close=True)
            return
        _, _, rest = path.partition("/")
        endpoint, _, argument = rest.partition("/")
        handler = _ENDPOINTS.get(endpoint) if argument or endpoint == "close" else None
        if handler is None:
            self._echo_response(request, path, query)
        else:
            handler(self, request, argument, path, query)

    # --- endpoints ---------------------------------------------------------------------------

    def _echo_response(self, request: _Request, path: str, query: str, close: bool = False) -> None:
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        payload = {
            "upstream": self.server.name,
            "method": request.method,
            "path": path,
            "query": query,
            "headers": headers,
            "body_bytes": request.body_bytes,
            "body": request.body_sample.decode("latin-1"),
        }
        body = json.dumps(payload).encode("utf-8") + b"\n"
        self._simple(request, 200, body, "application/json", close=close)

    def _bytes(self, request: _Request, argument: str, path: str, query: str) -> None:
        self._generated(request, argument, chunked=False)

    def _chunked(self, request: _Request, argument: str, path: str, query: str) -> None:
        self._generated(request, argument, chunked=True)

    def _generated(self, request: _Request, argument: str, chunked: bool) -> None:
        size = _parse_int(argument)
        if size is None:
            self._simple(request, 400, b"size must be a non-negative integer\n")
            return
        close = False
        headers = [("content-type", "application/octet-stream")]
        if chunked and request.version == "1.1":
            headers.append(("transfer-encoding", "chunked"))
        elif chunked:
            chunked = False  # HTTP/1.0 has no chunked coding: delimit the body by closing.
            close = True
        else:
            headers.append(("content-length", str(size)))
        self._write_head(request, 200, headers, close)
        if request.method == "HEAD":
            self._finish(request, close)
            return
        self._active = request
        self._stream = _Stream(request, size, chunked)
        if close:
            request.keep_alive = False
        self._pump_stream()

    def _pump_stream(self) -> None:
        stream = self._stream
        assert stream is not None
        while stream.remaining > 0 and not self._write_paused and not self._closing:
            size = min(CHUNK_SIZE, stream.remaining)
            data = CHUNK if size == CHUNK_SIZE else CHUNK[:size]
            stream.remaining -= size
            if stream.chunked:
                self._write(b"%x\r\n%b\r\n" % (size, data))
            else:
                self._write(data)
        if stream.remaining == 0 and not self._closing:
            if stream.chunked:
                self._write(b"0\r\n\r\n")
            self._stream = None
            self._finish(stream.request)
            self._advance()

    def _status(self, request: _Request, argument: str, path: str, query: str) -> None:
        code = _parse_int(argument)
        if code is None or not 200 <= code <= 599:
            self._simple(request, 400, b"status must be an integer in 200..599\n")
            return
        self._simple(request, code, f"status {code}\n".encode())

    def _delay(self, request: _Request, argument: str, path: str, query: str) -> None:
        millis = _parse_int(argument)
        if millis is None or millis > MAX_DELAY_MS:
            self._simple(request, 400, f"delay must be 0..{MAX_DELAY_MS} ms\n".encode())
            return
        self._active = request
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(millis / 1000, self._delay_done, request, path, query)

    def _delay_done(self, request: _Request, path: str, query: str) -> None:
        self._timer = None
        self._active = None
        self._echo_response(request, path, query)
        self._advance()

    def _close_endpoint(self, request: _Request, argument: str, path: str, query: str) -> None:
        self._simple(request, 200, b"closing\n", close=True)

    def _switch_protocols(self, request: _Request) -> None:
        headers = [("upgrade", request.header("upgrade") or ""), ("connection", "Upgrade")]
        key = request.header("sec-websocket-key")
        if key is not None:
            headers.append(("sec-websocket-accept", websocket_accept(key.strip())))
        self._write(self._head_bytes(101, headers))
        self.server.requests_served += 1
        self._echo = True
        self._queue.clear()
        pending = self._upgrade_pending or b""
        self._upgrade_pending = None
        if pending:
            self._write(bytes(pending))
        if self._read_paused and not self._write_paused:
            self._resume_reading()
        if self._eof:
            self._close()

    def _error_response(self, reason: str) -> None:
        body = f"malformed request: {reason}\n".encode()
        headers = [
            ("content-type", "text/plain"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        self._write(self._head_bytes(400, headers) + body)
        self.server.malformed_requests += 1
        self._close()

    # --- writing -----------------------------------------------------------------------------

    def _send_continue(self, request: _Request) -> None:
        request.continue_sent = True
        self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _simple(
        self,
        request: _Request,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
        close: bool = False,
    ) -> None:
        headers = [("content-type", content_type)]
        if status not in (204, 304):
            headers.append(("content-length", str(len(body))))
        else:
            body = b""
        head = self._write_head_bytes(request, status, headers, close)
        self._write(head if request.method == "HEAD" else head + body)
        self._finish(request, close)

    def _write_head(
        self, request: _Request, status: int, headers: list[tuple[str, str]], close: bool
    ) -> None:
        self._write(self._write_head_bytes(request, status, headers, close))

    def _write_head_bytes(
        self, request: _Request, status: int, headers: list[tuple[str, str]], close: bool
    ) -> bytes:
        if close or not request.keep_alive:
            headers.append(("connection", "close"))
        elif request.version == "1.0":
            headers.append(("connection", "keep-alive"))
        return self._head_bytes(status, headers)

    def _head_bytes(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"x-upstream-name: {self.server.name}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stream = None
        self._queue.clear()
        if self.transport is not None:
            self.transport.close()  # flushes what is buffered, then closes

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self._closing:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self._closing:
            self._read_paused = False
            self.transport.resume_reading()

    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0


_Handler = Callable[[_Connection, _Request, str, str, str], None]
_ENDPOINTS: dict[str, _Handler] = {
    "bytes": _Connection._bytes,
    "chunked": _Connection._chunked,
    "status": _Connection._status,
    "delay": _Connection._delay,
    "close": _Connection._close_endpoint,
}


def _parse_int(text: str) -> int | None:
    return int(text) if text.isdigit() and text.isascii() and len(text) <= 15 else None


class DemoUpstream:
    """A demo upstream server; every response carries `x-upstream-name: <name>`."""

    def __init__(self, name: str = "demo", host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.connections: set[_Connection] = set()
        self.requests_served = 0
        self.connections_accepted = 0
        self.malformed_requests = 0
        self.body_bytes_received = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await server.wait_closed()

    async def __aenter__(self) -> DemoUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


async def serve_forever(
    name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[DemoUpstream], None] | None = None,
) -> None:
    """Run one demo upstream until cancelled; `on_ready` learns the bound port."""
    server = DemoUpstream(name=name, host=host, port=port)
    await server.start()
    if on_ready is not None:
        on_ready(server)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
