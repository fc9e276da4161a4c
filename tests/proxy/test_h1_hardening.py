"""HTTP/1.1 hardening: each defect class an adversarial review found, with its variants.

Raw bytes from the client and raw bytes from a scripted upstream under the attacker's control go
through the real proxy. Where a test needs to know what reached the upstream, the upstream records
every byte it received, so "never forwarded" is checked on the wire rather than inferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from remora.proxy.server import ProxyServer
from tests.proxy.harness import bootstrap, cluster, http_listener, running_proxy
from tests.proxy.rawclient import read_response, send_and_read, split_responses
from tests.proxy.scripted import ScriptedUpstream, read_head, scripted_upstream

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
FAKE = (
    b"HTTP/1.1 200 SMUGGLED\r\nset-cookie: session=attacker\r\nx-smuggled: 1\r\n"
    b"content-length: 0\r\n\r\n"
)
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
)
ROUTES = [
    {"match": {"prefix": "/blocked"}, "direct_response": {"status": 403}},
    {"match": {"prefix": "/"}, "route": {"cluster": "backend"}},
]


class Recording:
    """What an upstream received, all connections in order, so tests can check the wire."""

    def __init__(self) -> None:
        self.received = bytearray()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await read_head(reader)
        self.received += head
        return head

    async def drain(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(65536):
            self.received += chunk


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Recording], Awaitable[None]]


@asynccontextmanager
async def proxied(
    script: Script, listener: dict[str, Any] | None = None, **cluster_options: Any
) -> AsyncIterator[tuple[ProxyServer, ScriptedUpstream, Recording]]:
    recording = Recording()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await script(reader, writer, recording)

    async with (
        scripted_upstream(run) as up,
        running_proxy(
            bootstrap(
                [listener or http_listener(routes=ROUTES)],
                [cluster("backend", [up.port], **cluster_options)],
            )
        ) as proxy,
    ):
        yield proxy, up, recording


def answer_each(reply: bytes) -> Script:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording
    ) -> None:
        while True:
            await rec.read_request(reader)
            writer.write(reply)
            await writer.drain()

    return script


def _port(proxy: ProxyServer) -> int:
    return proxy.listener_port("http")


def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


# -- 1. header sections counted as they arrive -----------------------------------------------


async def _send_until_answered(port: int, head: bytes, filler: bytes, total: int) -> bytes:
    """Send `head`, then `filler` up to `total` bytes, stopping once the proxy answers or
    closes; returns what came back. Sending everything without an answer fails the test."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    sent = 0
    answer = b""
    read = asyncio.ensure_future(reader.read(65536))
    try:
        while sent < total:
            writer.write(filler)
            sent += len(filler)
            try:
                await asyncio.wait_for(writer.drain(), 2)
            except (ConnectionError, TimeoutError):
                break
            await asyncio.sleep(0)
            if read.done():
                break
        with contextlib.suppress(ConnectionError, TimeoutError):
            answer = await asyncio.wait_for(read, 2)
    finally:
        read.cancel()
        writer.close()
    assert sent < total, f"sent all {total} bytes of an unending field without an answer"
    return answer


@pytest.mark.parametrize(
    "head",
    [
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: ",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big",  # a name that never reaches its colon
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big:     ",  # then only whitespace
    ],
)
async def test_a_header_field_that_never_ends_is_refused_as_it_grows(head: bytes) -> None:
    async with proxied(answer_each(OK)) as (proxy, up, _rec):
        filler = b" " if head.endswith(b"     ") else b"a"
        answer = await _send_until_answered(_port(proxy), head, filler * 65536, 25 << 20)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:60]
        assert up.connections == 0
        assert proxy.store.counter("http.http.downstream_rq_too_large").value == 1


async def test_a_trailer_that_never_ends_closes_the_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording):
        await rec.read_request(reader)
        await rec.drain(reader)

    async with proxied(script) as (proxy, _up, _rec):
        head = (
            b"POST /x HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Trailer: "
        )
        answer = await _send_until_answered(_port(proxy), head, b"a" * 65536, 25 << 20)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:60]


@pytest.mark.parametrize("filler", [b"e", b"0"])  # an extension, or leading zeros in the size
async def test_a_chunk_size_line_that_never_ends_is_refused(filler: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording):
        await rec.read_request(reader)
        await rec.drain(reader)

    async with proxied(script) as (proxy, _up, _rec):
        head = b"POST /x HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
        head += b"5;" if filler == b"e" else b""
        answer = await _send_until_answered(_port(proxy), head, filler * 65536, 25 << 20)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:60]
        assert b"chunk size line too long" in answer


async def test_empty_lines_before_a_request_are_bounded() -> None:
    async with proxied(answer_each(OK)) as (proxy, up, _rec):
        answer = await _send_until_answered(_port(proxy), b"", b"\r\n" * 32768, 25 << 20)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:60]
        assert up.connections == 0
        # A few, as some clients send after a POST body, are still skipped (RFC 9112 §2.2).
        data = await send_and_read(
            _port(proxy), b"\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"ok"
        )
        assert data.startswith(b"HTTP/1.1 200 "), data


async def test_an_error_answering_a_head_request_has_no_content() -> None:
    async with proxied(answer_each(OK)) as (proxy, _up, _rec):
        for request in (
            b"HEAD /\xff HTTP/1.1\r\n\r\n",
            b"HEAD / HTTP/1.1\r\ncontent-length: +5\r\n\r\n",
        ):
            data = await send_and_read(_port(proxy), request, timeout=3)
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 ") and body == b"", data


async def test_the_limit_holds_exactly_however_the_head_is_split() -> None:
    listener = http_listener(routes=ROUTES, max_request_headers_kb=2)
    async with proxied(answer_each(OK), listener) as (proxy, _up, _rec):
        for size, status in ((1900, 200), (2100, 431)):
            head = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * size + b"\r\n\r\n"
            for split in (1, 7, 40, len(head) - 3):
                reader, writer = await asyncio.open_connection("127.0.0.1", _port(proxy))
                writer.write(head[:split])
                await writer.drain()
                await asyncio.sleep(0.01)
                writer.write(head[split:])
                response = await read_response(reader)
                assert response.status == status, (size, split)
                writer.close()


async def test_a_large_pipelined_body_before_a_partial_head_is_not_counted_as_head() -> None:
    """The bytes before a head that begins mid-read belong to the previous message."""
    listener = http_listener(routes=ROUTES, max_request_headers_kb=1)
    async with proxied(answer_each(OK), listener) as (proxy, _up, _rec):
        body = b"b" * 50_000
        first = b"POST /a HTTP/1.1\r\nHost: a\r\ncontent-length: 50000\r\n\r\n" + body
        second = b"GET /b HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 600 + b"\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(proxy))
        writer.write(first + second[:-30])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(second[-30:])
        assert (await read_response(reader)).status == 200
        assert (await read_response(reader)).status == 200
        writer.close()


# -- 2. no unframed upstream bytes: 1xx responses have no content ------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 199 X\r\nContent-Length: %d\r\n\r\n" % len(FAKE) + FAKE,
        b"HTTP/1.1 199 X\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n" % len(FAKE)
        + FAKE
        + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\nContent-Length: %d\r\n\r\n" % len(FAKE) + FAKE,
        b"HTTP/1.1 103 Early Hints\r\nContent-Length: %d\r\n\r\n" % len(FAKE) + FAKE,
    ],
)
async def test_a_1xx_with_content_is_a_protocol_error_never_relayed(interim: bytes) -> None:
    async with proxied(answer_each(interim + OK)) as (proxy, _up, _rec):
        data = await send_and_read(
            _port(proxy),
            b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\n",
            until=b"upstream protocol error" * 2,
            timeout=3,
        )
        assert b"SMUGGLED" not in data and b"set-cookie" not in data.lower()
        responses = split_responses(data)
        assert [r[0] for r in responses] == [502, 502], data


async def test_1xx_are_forwarded_to_http11_clients_only() -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"
    processing = b"HTTP/1.1 102 Processing\r\n\r\n"
    listener = http_listener(routes=ROUTES, http_protocol_options={"accept_http_10": True})
    async with proxied(answer_each(processing + hints + OK), listener) as (proxy, _u, _r):
        data = await send_and_read(
            _port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"\r\n\r\nok"
        )
        assert data.startswith(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n")
        assert b"link: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n" in data
        data = await send_and_read(
            _port(proxy), b"GET / HTTP/1.0\r\nhost: x\r\n\r\n", until=b"\r\n\r\nok"
        )
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data  # RFC 9110 §15.2


# -- 3. upgrades: nothing passes until the upstream agrees ------------------------------------


async def test_bytes_after_a_declined_upgrade_never_reach_the_upstream() -> None:
    async def decline(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording):
        await rec.read_request(reader)
        await asyncio.sleep(0.1)  # the smuggled request has long arrived at the proxy
        writer.write(OK)
        await writer.drain()
        await rec.drain(reader)

    listener = http_listener(routes=ROUTES, upgrade_configs=[{"upgrade_type": "websocket"}])
    async with proxied(decline, listener) as (proxy, _up, rec):
        smuggled = b"GET /blocked/admin HTTP/1.1\r\nhost: x\r\n\r\n"
        data = await send_and_read(_port(proxy), UPGRADE + b"\r\n" + smuggled, timeout=3)
        assert [r[0] for r in split_responses(data)] == [200]  # and then the close
        assert b"connection: close" in data.lower()
        await asyncio.sleep(0.1)
        assert b"/blocked" not in rec.received and rec.received.count(b"GET ") == 1


async def test_bytes_after_an_agreed_upgrade_reach_the_upstream_after_the_101() -> None:
    async def accept_then_echo(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording
    ) -> None:
        await rec.read_request(reader)
        await asyncio.sleep(0.1)
        early = b""
        with contextlib.suppress(TimeoutError):
            early = await asyncio.wait_for(reader.read(100), 0.05)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        )
        writer.write(b"early:" + early + b"|")
        data = await reader.readexactly(len(b"tunnel bytes"))
        writer.write(b"late:" + data)
        await writer.drain()
        await rec.drain(reader)

    listener = http_listener(routes=ROUTES, upgrade_configs=[{"upgrade_type": "websocket"}])
    async with proxied(accept_then_echo, listener) as (proxy, _up, _rec):
        data = await send_and_read(
            _port(proxy), UPGRADE + b"\r\ntunnel bytes", until=b"late:tunnel bytes", timeout=3
        )
        assert b"101 Switching Protocols" in data
        assert b"early:|late:tunnel bytes" in data, data


async def test_a_101_declaring_content_is_a_protocol_error() -> None:
    reply = (
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
        b"content-length: 5\r\n\r\nhello"
    )
    listener = http_listener(routes=ROUTES, upgrade_configs=[{"upgrade_type": "websocket"}])
    async with proxied(answer_each(reply), listener) as (proxy, _up, _rec):
        data = await send_and_read(_port(proxy), UPGRADE + b"\r\n", timeout=3)
        assert data.startswith(b"HTTP/1.1 502 "), data


async def test_an_upgrade_request_with_a_body_is_refused_before_anything_is_sent() -> None:
    listener = http_listener(routes=ROUTES, upgrade_configs=[{"upgrade_type": "websocket"}])
    async with proxied(answer_each(OK), listener) as (proxy, up, _rec):
        for framing in (
            b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"content-length: 5\r\n\r\nhello",
        ):
            data = await send_and_read(_port(proxy), UPGRADE + framing, timeout=3)
            assert data.startswith(b"HTTP/1.1 400 "), data
        assert up.connections == 0


# -- 4. trailers are never headers -----------------------------------------------------------


async def test_trailers_of_a_queued_request_are_not_merged_into_its_head() -> None:
    async def slow_first(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording
    ) -> None:
        while True:
            head = await rec.read_request(reader)
            if head.startswith(b"POST"):
                rec.received += await reader.readuntil(b"0\r\n\r\n")
            else:
                await asyncio.sleep(0.2)
            writer.write(OK)
            await writer.drain()

    listener = http_listener(routes=ROUTES, use_remote_address=True)
    async with proxied(slow_first, listener) as (proxy, _up, rec):
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(proxy))
        writer.write(
            b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n"
            b"x-forwarded-proto: evil\r\nhost: evil\r\nconnection: x-request-id\r\n"
            b"expect: 100-continue\r\nx-trailer: t\r\n\r\n"
        )
        first = await read_response(reader)
        second_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert first.status == 200 and second_head.startswith(b"HTTP/1.1 200"), second_head
        writer.close()
        post = bytes(rec.received[rec.received.index(b"POST") :]).lower()
        head = post[: post.index(b"\r\n\r\n")]
        assert b"host: x\r\n" in head and b"evil" not in head and b"x-trailer" not in post
        assert b"x-forwarded-proto: http" in head and b"x-request-id: " in head


# -- 5. Connection cannot remove the proxy's own headers -------------------------------------


async def test_connection_tokens_do_not_strip_the_headers_the_proxy_adds() -> None:
    listener = http_listener(routes=ROUTES, use_remote_address=True)
    async with proxied(answer_each(OK), listener) as (proxy, _up, rec):
        data = await send_and_read(
            _port(proxy),
            b"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 6.6.6.6\r\n"
            b"connection: X-Forwarded-For, X-Forwarded-Proto, X-Request-Id, Via\r\n\r\n",
            until=b"\r\n\r\nok",
        )
        assert data.startswith(b"HTTP/1.1 200")
        head = bytes(rec.received).lower()
        assert b"x-forwarded-for: 127.0.0.1\r\n" in head  # the client's own nominated one went
        assert b"x-forwarded-proto: http\r\n" in head and b"x-request-id: " in head
        assert b"6.6.6.6" not in head


# -- 6. a broken pipelined request is never forwarded ----------------------------------------


async def test_a_pipelined_request_with_a_broken_chunk_is_answered_400_not_forwarded() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording):
        while True:
            await rec.read_request(reader)
            await asyncio.sleep(0.2)
            writer.write(OK)
            await writer.drain()

    async with proxied(slow) as (proxy, _up, rec):
        data = await send_and_read(
            _port(proxy),
            b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabczz\r\n",
            timeout=3,
        )
        responses = split_responses(data)
        assert [r[0] for r in responses] == [200, 400], data
        assert responses[1][1].get("connection") == "close"
        assert b"POST" not in rec.received


# -- 7. no traceback when a closing connection receives more bytes ---------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET /x HTTP/1.1\r\n\r\nGARBAGE\r\n\r\n",
        b"GET /x HTTP/1.0\r\n\r\nGARBAGE\r\n\r\n",
        b"GET /blocked HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n\x00\x01\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: a b\r\n\r\nGET /y HTTP/1.1\r\nhost: x\r\n\r\nBAD\r\n\r\n",
    ],
)
async def test_bytes_after_a_closing_reply_are_dropped_silently(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with proxied(answer_each(OK)) as (proxy, _up, _rec):
        received = await send_and_read(_port(proxy), data, timeout=3)
        assert len(split_responses(received)) == 1, received
        await asyncio.sleep(0.05)
    _no_errors_logged(caplog)


# -- 8. Host must be an authority ------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        b"a/evil?x",
        b"a, b",
        b"a,b",
        b"a\xe9",
        b"a b",
        b"user@a",
        b"a:80x",
        b"a:99999",
        b"[::1",
        b"%",
    ],
)
async def test_an_invalid_host_is_refused(host: bytes) -> None:
    async with proxied(answer_each(OK)) as (proxy, up, _rec):
        data = await send_and_read(_port(proxy), b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 "), data
        if b"/" not in host and b"?" not in host:  # those would end an absolute-form authority
            data = await send_and_read(
                _port(proxy), b"GET http://" + host + b"/x HTTP/1.1\r\nHost: ok\r\n\r\n"
            )
            assert data.startswith(b"HTTP/1.1 400 "), data
        assert up.connections == 0


@pytest.mark.parametrize("host", [b"a", b"a:8080", b"[::1]:80", b"xn--bcher-kva.example", b"a%41"])
async def test_valid_hosts_are_routed(host: bytes) -> None:
    async with proxied(answer_each(OK)) as (proxy, _up, _rec):
        data = await send_and_read(
            _port(proxy), b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", until=b"ok"
        )
        assert data.startswith(b"HTTP/1.1 200 "), data


# -- 9. upstream response header limits ------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-f%d: v\r\n" % i for i in range(3000)),
        b"HTTP/1.1 200 OK\r\nx-big: " + b"v" * 9_600_000 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nx-never-ends: " + b"v" * 9_600_000,
    ],
)
async def test_response_heads_beyond_the_limits_are_502(head: bytes) -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording):
        await rec.read_request(reader)
        writer.write(head)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            writer.write(b"content-length: 2\r\n\r\nok")
            await writer.drain()

    async with proxied(huge) as (proxy, _up, _rec):
        data = await send_and_read(_port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"err")
        assert data.startswith(b"HTTP/1.1 502 "), data[:100]
        assert len(data) < 1000


async def test_response_limits_come_from_the_clusters_protocol_options() -> None:
    options = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}},
            "common_http_protocol_options": {
                "max_headers_count": 300,
                "max_response_headers_kb": 1,
            },
        }
    }
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-f%d: v\r\n" % i for i in range(150)) + OK[17:]
    async with proxied(answer_each(many), typed_extension_protocol_options=options) as (
        proxy,
        _up,
        _rec,
    ):
        data = await send_and_read(_port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"ok")
        assert data.startswith(b"HTTP/1.1 502 "), data[:60]  # 150 fields pass, 1 KiB does not
    async with proxied(
        answer_each(b"HTTP/1.1 200 OK\r\n" + b"x: v\r\n" * 150 + OK[17:]),
        typed_extension_protocol_options={
            **options,
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                **options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
                "common_http_protocol_options": {"max_headers_count": 300},
            },
        },
    ) as (proxy, _up, _rec):
        data = await send_and_read(_port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"ok")
        assert data.startswith(b"HTTP/1.1 200 "), data[:60]


# -- 10. transfer-codings are forwarded faithfully -------------------------------------------


def _coded_responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, chunked body bytes) of each response; the reading client knows only chunked."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        body, last, data = rest.partition(b"0\r\n\r\n")
        assert last, rest
        out.append((head.lower(), body))
    return out


async def test_codings_before_chunked_are_kept() -> None:
    reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n4\r\nGZIP\r\n0\r\n\r\n"
    async with proxied(answer_each(reply)) as (proxy, _up, _rec):
        data = await send_and_read(
            _port(proxy),
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n" * 2,
            until=b"GZIP\r\n0\r\n\r\n" * 2,
        )
        data = data.replace(
            b"x-envoy-upstream-service-time: 1", b"x-envoy-upstream-service-time: 0"
        )
        for head, body in _coded_responses(data):
            assert b"\r\ntransfer-encoding: gzip, chunked" in head, head
            assert body == b"4\r\nGZIP\r\n"


async def test_a_close_delimited_coded_body_ends_with_a_last_chunk() -> None:
    async def coded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording):
        await rec.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nGZIPPED-BYTES")
        await writer.drain()

    async with proxied(coded) as (proxy, up, _rec):
        data = await send_and_read(
            _port(proxy),
            b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\n",
            until=b"BYTES\r\n0\r\n\r\n" * 2,
        )
        responses = _coded_responses(data)
        assert len(responses) == 2, data
        for head, body in responses:
            assert b"\r\ntransfer-encoding: gzip, chunked" in head, head
            assert body == b"d\r\nGZIPPED-BYTES\r\n"
        assert up.connections == 2


@pytest.mark.parametrize(
    "coding",
    [b"chunked, chunked", b"chunked, gzip", b"gzip\r\ntransfer-encoding: chunked, chunked"],
)
async def test_codings_that_cannot_be_forwarded_are_502(coding: bytes) -> None:
    reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: " + coding + b"\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    async with proxied(answer_each(reply)) as (proxy, _up, _rec):
        data = await send_and_read(_port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"err")
        assert data.startswith(b"HTTP/1.1 502 "), data


async def test_a_coded_body_for_an_http10_client_is_502() -> None:
    reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    listener = http_listener(routes=ROUTES, http_protocol_options={"accept_http_10": True})
    async with proxied(answer_each(reply), listener) as (proxy, _up, _rec):
        data = await send_and_read(_port(proxy), b"GET / HTTP/1.0\r\nhost: x\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 502 "), data


# -- 11. small framing rules -----------------------------------------------------------------


async def test_a_chunk_error_in_the_heads_read_is_a_502_and_the_pipeline_continues() -> None:
    replies = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\nbad\r\n", OK]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rec: Recording):
        await rec.read_request(reader)
        writer.write(replies.pop(0))
        await writer.drain()
        await rec.drain(reader)

    async with proxied(script) as (proxy, _up, _rec):
        data = await send_and_read(
            _port(proxy),
            b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\n",
            until=b"\r\n\r\nok",
        )
        assert [r[0] for r in split_responses(data)] == [502, 200], data


async def test_a_204_is_forwarded_without_content_length() -> None:
    reply = b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\netag: x\r\n\r\n"
    async with proxied(answer_each(reply)) as (proxy, _up, _rec):  # the bytes response path
        data = await send_and_read(
            _port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"\r\n\r\n"
        )
        assert data.startswith(b"HTTP/1.1 204 ") and b"content-length" not in data.lower()
    listener = http_listener(routes=ROUTES, via="remora")  # the decoded response path
    async with proxied(answer_each(reply), listener) as (proxy, _up, _rec):
        data = await send_and_read(
            _port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", until=b"\r\n\r\n"
        )
        assert data.startswith(b"HTTP/1.1 204 ") and b"content-length" not in data.lower()


@pytest.mark.parametrize("hcm", [{}, {"via": "remora"}])
async def test_an_upstream_service_time_is_replaced_not_repeated(hcm: dict[str, Any]) -> None:
    """Behind another proxy, the upstream's own x-envoy-upstream-service-time must not pile up:
    the fast path ({}) and the decoded path (via) both set this hop's figure instead."""
    reply = b"HTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: 999\r\ncontent-length: 2\r\n\r\nok"
    listener = http_listener(routes=ROUTES, **hcm)
    async with proxied(answer_each(reply), listener) as (proxy, _up, _rec):
        data = await send_and_read(
            _port(proxy), b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert head.count(b"x-envoy-upstream-service-time:") == 1
    assert b"x-envoy-upstream-service-time: 999" not in head
