"""Adversarial end-to-end cases: framing edges, disconnects at each phase, timeouts by phase.

Each test drives the real proxy with raw sockets against either the demo upstream or a scripted
upstream that sends exactly the bytes the case needs, then checks what the client saw and that no
upstream connection was leaked or reused in an unknown state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from pathlib import Path
from typing import Any

from remora.proxy.server import ProxyServer
from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    file_access_log,
    http_listener,
    running_proxy,
)
from tests.proxy.rawclient import read_response
from tests.proxy.scripted import blackhole, read_head, scripted_upstream


async def _settle(predicate: Any, timeout: float = 2.0) -> None:
    """Wait until `predicate()` holds (connection teardown finishes a loop turn or two later)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def _gauge(proxy: ProxyServer, name: str) -> int:
    return proxy.store.gauge(name).value


def _counter(proxy: ProxyServer, name: str) -> int:
    return proxy.store.counter(name).value


def _busy_upstream_connections(proxy: ProxyServer, name: str = "backend") -> int:
    """Upstream connections open but not idle in their pool: each must belong to a request."""
    cluster = proxy.clusters[name]
    assert cluster.open_connections == _gauge(proxy, f"cluster.{name}.upstream_cx_active")
    return sum(len(h.pool.connections) - h.pool.idle_count for h in cluster.hosts)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed client or a middlebox timeout does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _open(proxy: ProxyServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.listener_port("http"))


# -- framing ---------------------------------------------------------------------------------


async def test_pipelined_head_then_get_on_one_upstream_connection() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(
            b"HEAD /bytes/1000 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /bytes/10 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"HEAD /status/200 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n"
        )
        head = await read_response(reader, "HEAD")
        assert head.status == 200 and head.header("content-length") == "1000"
        get = await read_response(reader)
        assert (get.status, get.body) == (200, b"ABCDEFGHIJ")
        head = await read_response(reader, "HEAD")
        assert head.status == 200
        get = await read_response(reader)
        assert get.status == 200 and json.loads(get.body)["path"] == "/after"
        writer.close()
        assert _counter(proxy, "cluster.backend.upstream_cx_total") == 1


async def test_close_delimited_upstream_response_reaches_http11_and_http10_clients() -> None:
    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    async with (
        scripted_upstream(close_delimited) as up,
        running_proxy(
            bootstrap(
                [http_listener(http_protocol_options={"accept_http_10": True})],
                [cluster("backend", [up.port])],
            )
        ) as proxy,
    ):
        for version in ("1.1", "1.0"):
            reader, writer = await _open(proxy)
            writer.write(f"GET / HTTP/{version}\r\nhost: x\r\n\r\n".encode())
            response = await read_response(reader)
            assert (response.status, response.body) == (200, b"until the end"), version
            if version == "1.1":
                assert response.header("transfer-encoding") == "chunked"
                # The message was complete, so the client connection stays usable.
                writer.write(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")
                assert (await read_response(reader)).body == b"until the end"
            writer.close()
        assert _counter(proxy, "cluster.backend.upstream_rq_2xx") == 3


async def test_bytes_after_a_complete_response_are_not_given_to_the_next_request() -> None:
    """An upstream that answers once with two responses must not answer the next request."""

    async def double(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_head(reader)
            up.requests.append(head)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst"
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled"
            )
            await writer.drain()

    async with (
        scripted_upstream(double) as up,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [up.port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await read_response(reader)).body == b"first"
        assert (await read_response(reader)).body == b"first"
        writer.close()
        # The connection that carried the extra bytes is out of sync: it was not reused.
        assert up.connections == 2


async def test_garbage_after_a_response_closes_that_upstream_connection() -> None:
    async def trailing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokGARBAGE!!\r\n\r\n")
            await writer.drain()

    async with (
        scripted_upstream(trailing) as up,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [up.port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        for _ in range(3):
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            response = await read_response(reader)
            assert (response.status, response.body) == (200, b"ok")
        writer.close()
        assert up.connections == 3
        await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") == 0)


async def test_no_content_and_not_modified_with_and_without_length() -> None:
    replies = [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\netag: "a"\r\n\r\n',
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone",
    ]

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            await read_head(reader)
            writer.write(reply)
            await writer.drain()

    async with (
        scripted_upstream(answers) as up,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [up.port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n" * len(replies))
        statuses = []
        for _ in replies:
            response = await read_response(reader)
            statuses.append(response.status)
            assert response.header("transfer-encoding") is None
        last = response
        assert statuses == [204, 204, 304, 304, 200] and last.body == b"done"
        writer.close()
        assert up.connections == 1


async def test_chunked_upstream_response_with_trailers() -> None:
    async def trailers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n"
            )
            await writer.drain()

    async with (
        scripted_upstream(trailers) as up,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [up.port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            response = await read_response(reader)
            assert (response.status, response.body) == (200, b"hello world")
        writer.close()
        assert up.connections == 1


async def test_interim_responses_are_forwarded_but_are_not_the_final_answer() -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_head(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.02)
            final = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
            writer.write(final if head.startswith(b"HEAD") else final + b"final")
            await writer.drain()

    async with (
        scripted_upstream(interim) as up,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [up.port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        for method in ("GET", "HEAD", "GET"):
            writer.write(f"{method} / HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            # RFC 9110 §15.2: the 103 is forwarded; the 100 is not, since the proxy answers
            # Expect itself; then the final response.
            raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert raw_head.startswith(b"HTTP/1.1 103 Early Hints\r\n"), raw_head
            assert b"link: </a.css>; rel=preload" in raw_head
            raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert raw_head.startswith(b"HTTP/1.1 200"), raw_head
            if method == "GET":
                assert await reader.readexactly(5) == b"final"
        writer.close()
        assert up.connections == 1


# -- client disconnects ----------------------------------------------------------------------


async def test_client_leaving_while_the_upstream_connects_leaks_nothing() -> None:
    async with (
        blackhole() as port,
        running_proxy(
            bootstrap(
                [http_listener()],
                [cluster("backend", [port], connect_timeout="5s")],
            )
        ) as proxy,
    ):
        for _ in range(3):
            _, writer = await _open(proxy)
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") > 0)
            _reset(writer)
            await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") == 0)
        assert proxy.clusters["backend"].open_connections == 0
        await _settle(lambda: _gauge(proxy, "http.http.downstream_rq_active") == 0)


async def test_tcp_client_leaving_while_the_upstream_connects_leaks_nothing() -> None:
    from tests.proxy.harness import tcp_listener

    async with (
        blackhole() as port,
        running_proxy(
            bootstrap([tcp_listener("backend")], [cluster("backend", [port], connect_timeout="5s")])
        ) as proxy,
    ):
        for _ in range(3):
            _, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("tcp"))
            await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") > 0)
            _reset(writer)
            await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") == 0)
        assert proxy.clusters["backend"].open_connections == 0


async def test_client_leaving_at_each_phase_leaves_no_upstream_connection() -> None:
    phases = {
        "mid headers": b"GET /delay/50 HTTP/1.1\r\nhost: x\r\nx-part",
        "mid body": b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nabc",
        "mid chunked body": b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n",
        "waiting for the upstream": b"GET /delay/2000 HTTP/1.1\r\nhost: x\r\n\r\n",
        "mid response": b"GET /bytes/50000000 HTTP/1.1\r\nhost: x\r\n\r\n",
    }
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        for phase, data in phases.items():
            reader, writer = await _open(proxy)
            writer.write(data)
            if phase == "mid response":
                await reader.readexactly(100_000)
            else:
                await asyncio.sleep(0.05)
            if phase in ("waiting for the upstream", "mid response"):
                _reset(writer)
            else:
                writer.close()  # a FIN: the request can never complete
            await _settle(lambda: _busy_upstream_connections(proxy) == 0)
            await _settle(lambda: _gauge(proxy, "http.http.downstream_rq_active") == 0)
            # What the upstream still has open is exactly what the pool holds idle.
            await _settle(
                lambda: (
                    len(ups[0].connections)
                    == _busy_upstream_connections(proxy)
                    + proxy.clusters["backend"].hosts[0].pool.idle_count
                )
            )
            # Keeps serving, on a fresh upstream connection.
            reader, writer = await _open(proxy)
            writer.write(b"GET /next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            response = await read_response(reader)
            assert json.loads(response.body)["path"] == "/next", phase
            writer.close()


async def test_a_waiter_cancelled_as_it_is_handed_a_connection_gives_it_back() -> None:
    thresholds = {"thresholds": [{"max_connections": 1}]}
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener()],
                [cluster("backend", [ups[0].port], circuit_breakers=thresholds)],
            )
        ) as proxy,
    ):
        pool = proxy.clusters["backend"].hosts[0].pool
        first = await pool.acquire()
        waiting = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.01)  # now queued behind the connection limit
        pool.release(first)  # hands `first` to the waiter...
        waiting.cancel()  # ...whose request leaves before it runs again
        await asyncio.gather(waiting, return_exceptions=True)
        assert pool.idle_count == 1
        assert await pool.acquire() is first
        pool.release(first)


# -- timeouts --------------------------------------------------------------------------------


async def test_route_timeout_starts_once_the_request_is_complete() -> None:
    """Envoy: the route timeout spans end-of-request to end-of-response, not a slow upload."""
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "0.3s"}}]
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap([http_listener(routes=routes)], [cluster("backend", [ups[0].port])])
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\n\r\n")
        for byte in b"abcdef":
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
        response = await read_response(reader)
        assert response.status == 200 and json.loads(response.body)["body"] == "abcdef"
        # Still enforced after the request: a slow upstream gets 504 UT.
        writer.write(b"GET /delay/1000 HTTP/1.1\r\nhost: x\r\n\r\n")
        response = await read_response(reader)
        assert (response.status, response.body) == (504, b"upstream request timeout")
        writer.close()
        assert _counter(proxy, "cluster.backend.upstream_rq_timeout") == 1


async def test_stream_idle_timeout_spares_a_response_that_keeps_flowing() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n")
        for byte in b"trickled":
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
            await writer.drain()
        await reader.read()

    async with (
        scripted_upstream(trickle) as up,
        running_proxy(
            bootstrap([http_listener(stream_idle_timeout="0.35s")], [cluster("backend", [up.port])])
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        response = await read_response(reader)
        assert (response.status, response.body) == (200, b"trickled")
        writer.close()
        assert _counter(proxy, "http.http.downstream_rq_idle_timeout") == 0


async def test_stream_idle_timeout_waiting_on_the_upstream_is_504_and_flagged_si(
    tmp_path: Path,
) -> None:
    # Envoy: 504 once the request is complete (the wait is the upstream's), 408 while it is
    # still arriving; the stream idle timeout is the one timeout with a flag (SI).
    log_path = tmp_path / "access.log"
    access_log = file_access_log(log_path, "%RESPONSE_CODE% %RESPONSE_FLAGS%\n")
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(stream_idle_timeout="0.2s", access_log=access_log)],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(b"GET /delay/1000 HTTP/1.1\r\nhost: x\r\n\r\n")
        response = await read_response(reader)
        assert (response.status, response.body) == (504, b"stream timeout")
        writer.close()
        reader, writer = await _open(proxy)
        writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        response = await read_response(reader)
        assert (response.status, response.body) == (408, b"stream timeout")
        writer.close()
        assert _counter(proxy, "http.http.downstream_rq_idle_timeout") == 2
        await _settle(lambda: _busy_upstream_connections(proxy) == 0)
    await _settle(lambda: log_path.exists() and len(log_path.read_text().splitlines()) == 2)
    assert log_path.read_text().splitlines() == ["504 SI", "408 SI"]


async def test_timeouts_of_a_pipelined_request_never_answer_the_one_in_flight() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(request_headers_timeout="0.2s", request_timeout="0.4s")],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        for partial in (
            b"GET /2 HTTP/1.1\r\nhost: x\r\n",
            b"POST /2 HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc",
        ):
            reader, writer = await _open(proxy)
            writer.write(b"GET /delay/700 HTTP/1.1\r\nhost: x\r\n\r\n" + partial)
            first = await read_response(reader)
            assert first.status == 200 and json.loads(first.body)["path"] == "/delay/700"
            second = await read_response(reader)
            assert second.status == 408
            assert await reader.read() == b""
            writer.close()


# -- upgrades --------------------------------------------------------------------------------

_UPGRADE = (
    b"GET %s HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
)


async def test_websocket_tunnel_early_data_half_close_and_route_timeout() -> None:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "0.2s"}}]
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(routes=routes, upgrade_configs=[{"upgrade_type": "websocket"}])],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(_UPGRADE % b"/ws" + b"early bytes")  # sent before the 101 exists
        response = await read_response(reader)
        assert response.status == 101
        assert await reader.readexactly(11) == b"early bytes"
        await asyncio.sleep(0.4)  # past the route timeout: a tunnel has no request timeout
        writer.write(b"later")
        assert await asyncio.wait_for(reader.readexactly(5), 2) == b"later"
        writer.write(b"last words")
        writer.write_eof()  # half-close: the upstream sees EOF, answers, and closes
        assert await asyncio.wait_for(reader.read(), 2) == b"last words"
        writer.close()
        await _settle(lambda: _gauge(proxy, "http.http.downstream_cx_upgrades_active") == 0)
        await _settle(lambda: _busy_upstream_connections(proxy) == 0)
        assert _gauge(proxy, "cluster.backend.upstream_cx_active") == 0


async def test_websocket_refused_by_the_upstream_is_relayed_and_closed() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(upgrade_configs=[{"upgrade_type": "websocket"}])],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(_UPGRADE % b"/not-a-socket" + b"early bytes")
        response = await read_response(reader)
        assert response.status == 200
        assert json.loads(response.body)["path"] == "/not-a-socket"
        assert await asyncio.wait_for(reader.read(), 2) == b""  # and the connection closes
        writer.close()
        await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") == 0)
        assert _gauge(proxy, "http.http.downstream_cx_upgrades_active") == 0
        assert _gauge(proxy, "http.http.downstream_rq_active") == 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 4\r\n\r\nnope")
        await writer.drain()
        await reader.read()

    async with (
        scripted_upstream(refuse) as up,
        running_proxy(
            bootstrap(
                [http_listener(upgrade_configs=[{"upgrade_type": "websocket"}])],
                [cluster("backend", [up.port])],
            )
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(_UPGRADE % b"/ws")
        response = await read_response(reader)
        assert (response.status, response.body) == (400, b"nope")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") == 0)


# -- upstream failures -----------------------------------------------------------------------


async def test_upstream_leaving_at_each_phase() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if b"/before-head" in head:
            return
        if b"/mid-body" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        elif b"/mid-chunked" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n")
        elif b"/mid-head" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
        await writer.drain()

    async with (
        scripted_upstream(script) as up,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [up.port])])) as proxy,
    ):
        for path in ("/before-head", "/mid-head"):
            reader, writer = await _open(proxy)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            response = await read_response(reader)
            assert response.status in (502, 503), path
            # Nothing of the response was sent, so the client connection goes on.
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            assert (await read_response(reader)).status in (502, 503)
            writer.close()
        for path in ("/mid-body", "/mid-chunked"):
            reader, writer = await _open(proxy)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            # The body was cut short: the client must not see a complete message.
            with contextlib.suppress(ConnectionResetError):
                rest = await asyncio.wait_for(reader.read(), 2)
                assert not rest.endswith(b"0\r\n\r\n")
                assert len(rest) < 100
            writer.close()
        await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") == 0)
        assert _gauge(proxy, "http.http.downstream_rq_active") == 0


async def test_upstream_answering_before_the_body_is_read() -> None:
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big!")
        await writer.drain()
        await asyncio.sleep(0.5)  # neither reads the body nor closes

    async with (
        scripted_upstream(early) as up,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [up.port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n")
        writer.write(b"x" * 65536)
        response = await read_response(reader)
        assert (response.status, response.body) == (413, b"too big!")
        assert response.header("connection") == "close"
        writer.close()
        await _settle(lambda: _gauge(proxy, "cluster.backend.upstream_cx_active") == 0)
        await _settle(lambda: _gauge(proxy, "http.http.downstream_rq_active") == 0)


async def test_pipelined_bodies_and_failures_keep_their_order() -> None:
    routes = [
        {"match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "0.3s"}},
    ]
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(routes=routes)],
                [cluster("backend", [ups[0].port]), cluster("dead", [1])],
            )
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(
            b"POST /delay/100 HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nfirst"
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            b"6\r\nsecond\r\n0\r\n\r\n"
            b"GET /dead HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nthird"
            b"GET /delay/1000 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfou"
        )
        seen = []
        for _ in range(5):
            response = await read_response(reader)
            body = json.loads(response.body)["body"] if response.status == 200 else ""
            seen.append((response.status, body))
        writer.write(b"rth\r\n0\r\n\r\n")  # the last body arrives only now
        last = await read_response(reader)
        writer.close()
        assert seen == [(200, "first"), (200, "second"), (503, ""), (200, "third"), (504, "")]
        assert (last.status, json.loads(last.body)["body"]) == (200, "fourth")


# -- headers ---------------------------------------------------------------------------------


async def test_response_header_rules_through_a_real_route() -> None:
    async def headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_head(reader)
            up.requests.append(head)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: x-hop, keep-alive\r\n"
                b"x-hop: secret\r\nkeep-alive: timeout=5\r\nserver: upstream\r\nvia: 1.1 up\r\n"
                b"x-dup: a\r\nx-dup: b\r\nx-keep: 1\r\n\r\nok"
            )
            await writer.drain()

    routes = [
        {
            "match": {"prefix": "/"},
            "route": {"cluster": "backend"},
            "request_headers_to_add": [
                {"header": {"key": "x-added", "value": "route"}, "append_action": "ADD_IF_ABSENT"},
                {
                    "header": {"key": "x-over", "value": "route"},
                    "append_action": "OVERWRITE_IF_EXISTS",
                },
            ],
            "request_headers_to_remove": ["x-drop"],
            "response_headers_to_add": [
                {
                    "header": {"key": "x-dup", "value": "c"},
                    "append_action": "APPEND_IF_EXISTS_OR_ADD",
                },
                {
                    "header": {"key": "x-keep", "value": "2"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                },
            ],
        }
    ]
    async with (
        scripted_upstream(headers) as up,
        running_proxy(
            bootstrap(
                [
                    http_listener(
                        routes=routes,
                        via="1.1 remora",
                        server_header_transformation="APPEND_IF_ABSENT",
                    )
                ],
                [cluster("backend", [up.port])],
            )
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(
            b"GET / HTTP/1.1\r\nhost: x\r\nx-added: client\r\nx-over: client\r\nx-drop: 1\r\n"
            b"via: 1.0 client\r\nconnection: x-mine\r\nx-mine: 1\r\n\r\n"
        )
        response = await read_response(reader)
        writer.close()
        names = [name for name, _ in response.headers]
        for hop in ("x-hop", "keep-alive"):
            assert hop not in names, hop
        assert response.header("server") == "upstream"
        assert [v for n, v in response.headers if n == "x-dup"] == ["a", "b", "c"]
        assert [v for n, v in response.headers if n == "x-keep"] == ["2"]
        # Envoy's `via` goes on requests and on responses.
        assert response.header("via") == "1.1 up, 1.1 remora"
        sent = up.requests[0].decode("latin-1").lower()
        assert "x-added: client\r\n" in sent and "x-added: route" not in sent
        assert "x-over: route\r\n" in sent and "x-drop" not in sent and "x-mine" not in sent
        assert "via: 1.0 client, 1.1 remora\r\n" in sent


# -- keep-alive ------------------------------------------------------------------------------


async def test_local_replies_keep_the_connection_and_nothing_follows_a_close() -> None:
    routes = [
        {
            "match": {"path": "/direct"},
            "direct_response": {"status": 200, "body": {"inline_string": "d"}},
        },
        {"match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}},
    ]
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap([http_listener(routes=routes)], [cluster("backend", [ups[0].port])])
        ) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(
            b"GET /direct HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /old HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /direct HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            b"POST /never HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx"
        )
        statuses = []
        for _ in range(3):
            response = await read_response(reader)
            statuses.append((response.status, response.header("connection")))
        assert statuses == [(200, None), (301, None), (200, "close")]
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        # The request after `connection: close` was neither answered nor sent upstream.
        assert ups[0].requests_served == 0
        assert _counter(proxy, "http.http.downstream_rq_total") == 3


async def test_a_malformed_pipelined_request_does_not_reset_the_ones_before_it() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(
            b"GET /delay/200 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /second HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GARBAGE\r\n\r\n"
        )
        first = await read_response(reader)
        assert first.status == 200 and json.loads(first.body)["path"] == "/delay/200"
        second = await read_response(reader)
        assert second.status == 200 and json.loads(second.body)["path"] == "/second"
        error = await read_response(reader)
        assert error.status == 400 and error.header("connection") == "close"
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


async def test_pipelined_requests_then_half_close_are_all_answered() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        reader, writer = await _open(proxy)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(3)))
        writer.write_eof()  # `printf ... | nc -N`: the requests are all there is
        paths, closes = [], []
        for _ in range(3):
            response = await read_response(reader)
            paths.append(json.loads(response.body)["path"])
            closes.append(response.header("connection"))
        assert paths == ["/0", "/1", "/2"]
        assert closes == [None, None, "close"]
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


async def test_transfer_codings_are_refused_before_anything_is_forwarded() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        for coding, status in ((b"gzip, chunked", 501), (b"chunked, gzip", 400)):
            reader, writer = await _open(proxy)
            writer.write(
                b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: %s\r\n\r\n0\r\n\r\n" % coding
            )
            response = await read_response(reader)
            assert response.status == status, coding
            writer.close()
        assert ups[0].requests_served == 0
        assert len(ups[0].connections) == 0
