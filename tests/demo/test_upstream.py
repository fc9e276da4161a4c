"""The demo upstream against real clients: httpx, h11, and raw sockets for the protocol edges."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator

import h11
import httptools
import httpx
import pytest
import uvloop

from remora.demo.upstream import (
    BODY_SAMPLE,
    CHUNK_SIZE,
    DemoUpstream,
    pattern_bytes,
    serve_forever,
    websocket_accept,
)


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


class ResponseReader:
    """Parses a stream of responses with httptools (llhttp), independent of the server code."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[Response] = []
        self.current = Response()
        self.upgraded_tail: bytes | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode().lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self.current)
        self.current = Response()

    async def read(self, count: int, timeout: float = 10.0) -> list[Response]:
        async with asyncio.timeout(timeout):
            while len(self.done) < count and self.upgraded_tail is None:
                data = await self.reader.read(65536)
                if not data:
                    break
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserUpgrade as exc:
                    self.upgraded_tail = data[exc.args[0] :]
        out, self.done = self.done[:count], self.done[count:]
        return out


@pytest.fixture
async def upstream() -> AsyncIterator[DemoUpstream]:
    server = DemoUpstream(name="demo-a", host="127.0.0.1", port=0)
    await server.start()
    yield server
    await server.close()


async def connect(
    server: DemoUpstream,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ResponseReader]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    return reader, writer, ResponseReader(reader)


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()


# --- httpx -------------------------------------------------------------------------------------


async def test_echo_get(upstream: DemoUpstream) -> None:
    async with httpx.AsyncClient(base_url=upstream.url) as client:
        response = await client.get("/some/path?a=1&b=two", headers={"X-Test": "yes"})
    assert response.status_code == 200
    assert response.headers["x-upstream-name"] == "demo-a"
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["upstream"] == "demo-a"
    assert data["method"] == "GET"
    assert data["path"] == "/some/path"
    assert data["query"] == "a=1&b=two"
    assert data["headers"]["x-test"] == "yes"
    assert data["headers"]["host"] == f"127.0.0.1:{upstream.port}"
    assert data["body_bytes"] == 0
    assert data["body"] == ""
    assert upstream.requests_served == 1


async def test_content_length_and_chunked_bodies(upstream: DemoUpstream) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"\xff" * 5000, b"end"):
            yield piece

    async with httpx.AsyncClient(base_url=upstream.url) as client:
        fixed = await client.post("/upload", content=b"hello world")
        chunked = await client.post("/upload", content=parts())
        assert fixed.json()["body_bytes"] == 11
        assert fixed.json()["body"] == "hello world"
        data = chunked.json()
        assert data["headers"]["transfer-encoding"] == "chunked"
        assert data["body_bytes"] == 5006
        assert data["body"] == ("abc" + "\xff" * 5000)[:BODY_SAMPLE]
    assert upstream.connections_accepted == 1  # keep-alive reused the connection


async def test_bytes_endpoint_streams_exact_pattern(upstream: DemoUpstream) -> None:
    async with httpx.AsyncClient(base_url=upstream.url) as client:
        for size in (0, 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 17):
            response = await client.get(f"/bytes/{size}")
            assert response.status_code == 200
            assert response.headers["content-length"] == str(size)
            assert response.content == pattern_bytes(0, size)


async def test_chunked_endpoint(upstream: DemoUpstream) -> None:
    async with httpx.AsyncClient(base_url=upstream.url) as client:
        response = await client.get(f"/chunked/{2 * CHUNK_SIZE + 5}")
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        assert response.content == pattern_bytes(0, 2 * CHUNK_SIZE + 5)
        empty = await client.get("/chunked/0")
        assert empty.content == b""


async def test_status_endpoint(upstream: DemoUpstream) -> None:
    async with httpx.AsyncClient(base_url=upstream.url) as client:
        teapot = await client.get("/status/418")
        assert teapot.status_code == 418
        assert teapot.text == "status 418\n"
        assert teapot.headers["x-upstream-name"] == "demo-a"
        no_content = await client.get("/status/204")
        assert no_content.status_code == 204
        assert no_content.content == b""
        assert (await client.get("/status/503")).status_code == 503
        assert (await client.get("/status/99")).status_code == 400
        assert (await client.get("/status/abc")).status_code == 400
        assert (await client.get("/bytes/-1")).status_code == 400


async def test_delay_endpoint(upstream: DemoUpstream) -> None:
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=upstream.url) as client:
        started = loop.time()
        response = await client.get("/delay/200")
        assert loop.time() - started >= 0.19
        assert response.json()["path"] == "/delay/200"
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/delay/2000", timeout=0.1)


async def test_close_endpoint(upstream: DemoUpstream) -> None:
    reader, writer, responses = await connect(upstream)
    writer.write(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    (response,) = await responses.read(1)
    assert response.status == 200
    assert response.header("connection") == "close"
    assert await read_to_eof(reader) == b""  # the pipelined second request is not answered
    writer.close()


def test_sync_httpx_in_thread() -> None:
    async def scenario(started: asyncio.Future[int], stop: asyncio.Event) -> None:
        async with DemoUpstream(name="demo-b") as server:
            started.set_result(server.port)
            await stop.wait()

    loop = asyncio.new_event_loop()
    try:
        started: asyncio.Future[int] = loop.create_future()
        stop = asyncio.Event()
        task = loop.create_task(scenario(started, stop))
        port = loop.run_until_complete(started)

        def client() -> httpx.Response:
            with httpx.Client() as sync_client:
                return sync_client.get(f"http://127.0.0.1:{port}/x")

        response = loop.run_until_complete(loop.run_in_executor(None, client))
        assert response.headers["x-upstream-name"] == "demo-b"
        stop.set()
        loop.run_until_complete(task)
    finally:
        loop.close()


# --- h11 (HEAD needs a client that knows the request method) ------------------------------------


async def test_head_has_headers_but_no_body(upstream: DemoUpstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream.port)
    conn = h11.Connection(h11.CLIENT)
    for target in (b"/", b"/bytes/100000", b"/status/404"):
        writer.write(conn.send(h11.Request(method="HEAD", target=target, headers=[("Host", "x")])))
        writer.write(conn.send(h11.EndOfMessage()))
        events: list[object] = []
        async with asyncio.timeout(5):
            while not isinstance(events[-1:] and events[-1], h11.EndOfMessage):
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                    continue
                events.append(event)
        head = events[0]
        assert isinstance(head, h11.Response)
        assert not any(isinstance(e, h11.Data) for e in events)
        headers = dict(head.headers)
        if target == b"/bytes/100000":
            assert headers[b"content-length"] == b"100000"
        assert headers[b"x-upstream-name"] == b"demo-a"
        conn.start_next_cycle()
    writer.close()


# --- raw sockets: pipelining, HTTP/1.0, 100-continue, upgrade, malformed input -----------------


async def test_pipelined_responses_come_back_in_order(upstream: DemoUpstream) -> None:
    _reader, writer, responses = await connect(upstream)
    writer.write(
        b"GET /delay/150 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first, second, third, fourth = await responses.read(4)
    assert first.json()["path"] == "/delay/150"
    assert second.json()["path"] == "/second"
    assert second.json()["body"] == "abc"
    assert bytes(third.body) == pattern_bytes(0, 10)
    assert fourth.json()["path"] == "/third"
    writer.close()


async def test_deep_pipeline(upstream: DemoUpstream) -> None:
    _reader, writer, responses = await connect(upstream)
    count = 500
    writer.write(b"".join(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count)))
    got = await responses.read(count)
    assert [len(r.body) for r in got] == list(range(count))
    assert upstream.requests_served == count
    writer.close()


async def test_http10_closes_unless_keep_alive(upstream: DemoUpstream) -> None:
    reader, writer, responses = await connect(upstream)
    writer.write(b"GET /one HTTP/1.0\r\n\r\n")
    (response,) = await responses.read(1)
    assert response.header("connection") == "close"
    assert await read_to_eof(reader) == b""
    writer.close()

    reader, writer, responses = await connect(upstream)
    request = b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    writer.write(request)
    (first,) = await responses.read(1)
    assert first.header("connection") == "keep-alive"
    writer.write(request)
    (second,) = await responses.read(1)
    assert second.json()["path"] == "/ka"
    writer.close()


async def test_http10_chunked_endpoint_is_close_delimited(upstream: DemoUpstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream.port)
    writer.write(b"GET /chunked/70000 HTTP/1.0\r\n\r\n")
    raw = await read_to_eof(reader)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding" not in head.lower()
    assert body == pattern_bytes(0, 70000)
    writer.close()


async def test_expect_100_continue(upstream: DemoUpstream) -> None:
    reader, writer, responses = await connect(upstream)
    writer.write(
        b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    async with asyncio.timeout(5):
        interim = await reader.readuntil(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    (response,) = await responses.read(1)
    assert response.status == 200
    assert response.json()["body"] == "hello"
    writer.close()


async def test_expect_100_continue_waits_for_head_of_line(upstream: DemoUpstream) -> None:
    _reader, writer, responses = await connect(upstream)
    writer.write(
        b"GET /delay/100 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    (delayed, interim) = await responses.read(2)
    assert delayed.json()["path"] == "/delay/100"  # the 100 did not cut into this response
    assert interim.status == 100
    writer.write(b"ok")
    (final,) = await responses.read(1)
    assert final.json()["body"] == "ok"
    writer.close()


async def test_websocket_upgrade_then_echo(upstream: DemoUpstream) -> None:
    reader, writer, _responses = await connect(upstream)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        b"early-bytes"
    )
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    # RFC 6455 §1.3's worked example.
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert b"x-upstream-name: demo-a\r\n" in head
    async with asyncio.timeout(5):
        assert await reader.readexactly(11) == b"early-bytes"
        payload = os.urandom(300_000)
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
    writer.write_eof()
    assert await read_to_eof(reader) == b""
    writer.close()


def test_websocket_accept_matches_rfc_example() -> None:
    assert websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def test_other_upgrade_protocol_is_echoed_too(upstream: DemoUpstream) -> None:
    reader, writer, _responses = await connect(upstream)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: foo/2\r\nConnection: upgrade\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"upgrade: foo/2" in head.lower()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
    writer.close()


async def test_upgrade_elsewhere_is_declined_with_close(upstream: DemoUpstream) -> None:
    reader, writer, responses = await connect(upstream)
    writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
    (response,) = await responses.read(1)
    assert response.status == 200
    assert response.header("connection") == "close"
    assert await read_to_eof(reader) == b""
    writer.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
    ],
)
async def test_malformed_request_gets_400_and_close(upstream: DemoUpstream, garbage: bytes) -> None:
    reader, writer, responses = await connect(upstream)
    writer.write(garbage)
    (response,) = await responses.read(1)
    assert response.status == 400
    assert response.header("connection") == "close"
    assert await read_to_eof(reader) == b""
    assert upstream.malformed_requests == 1
    writer.close()


async def test_malformed_after_valid_pipelined_request(upstream: DemoUpstream) -> None:
    _reader, writer, responses = await connect(upstream)
    writer.write(b"GET /delay/50 HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01junk\r\n\r\n")
    ok, bad = await responses.read(2)
    assert ok.status == 200 and bad.status == 400
    writer.close()


async def test_half_closed_client_still_gets_answers(upstream: DemoUpstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream.port)
    writer.write(b"GET /delay/50 HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write_eof()
    raw = await read_to_eof(reader)
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    writer.close()


async def test_large_streaming_upload_is_counted_not_buffered(upstream: DemoUpstream) -> None:
    _reader, writer, responses = await connect(upstream)
    block = b"z" * (1 << 20)
    total_blocks = 48
    tracemalloc.start()
    writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(total_blocks):
        writer.write(b"%x\r\n%b\r\n" % (len(block), block))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    (response,) = await responses.read(1, timeout=30)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Client and server share this process: 48 MiB went through, far less was ever held at once.
    assert peak < 12 * len(block)
    data = response.json()
    assert data["body_bytes"] == total_blocks * len(block)
    assert data["body"] == "z" * BODY_SAMPLE
    writer.close()


# --- flow control ------------------------------------------------------------------------------


async def _bounded_write_buffer(server: DemoUpstream, port: int) -> None:
    size = 200 * 1024 * 1024
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
    peak = 0
    for _ in range(30):  # 0.6 s of not reading at all
        await asyncio.sleep(0.02)
        for connection in server.connections:
            peak = max(peak, connection.write_buffer_size())
    assert len(server.connections) == 1
    # Bounded by the transport's high-water mark plus one 64 KiB chunk, not by the 200 MB.
    assert 0 < peak <= 256 * 1024
    received = 0
    async with asyncio.timeout(60):
        while received < size:
            data = await loop.sock_recv(sock, 1 << 20)
            assert data, "server closed early"
            received += len(data)
    head_len = received - size
    assert 0 < head_len < 512
    sock.close()


async def test_slow_reader_keeps_server_buffer_bounded(upstream: DemoUpstream) -> None:
    await _bounded_write_buffer(upstream, upstream.port)


def test_works_on_uvloop() -> None:
    async def scenario() -> None:
        async with DemoUpstream(name="uv") as server:
            _reader, writer, responses = await connect(server)
            writer.write(
                b"GET /delay/20 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /chunked/100000 HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            first, second = await responses.read(2)
            assert first.json()["upstream"] == "uv"
            assert bytes(second.body) == pattern_bytes(0, 100000)
            writer.close()
            await _bounded_write_buffer(server, server.port)

    uvloop.run(scenario())


# --- lifecycle ---------------------------------------------------------------------------------


async def test_close_drops_open_connections(upstream: DemoUpstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream.port)
    writer.write(b"GET /delay/10000 HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.05)
    assert len(upstream.connections) == 1
    await upstream.close()
    assert await read_to_eof(reader) == b""
    assert not upstream.connections
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", upstream.port)
    writer.close()


async def test_serve_forever_until_cancelled() -> None:
    ready: asyncio.Future[DemoUpstream] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_forever("forever", "127.0.0.1", 0, ready.set_result))
    server = await asyncio.wait_for(ready, 5)
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/")
    assert response.json()["upstream"] == "forever"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
