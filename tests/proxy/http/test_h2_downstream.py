"""HTTP/2 from clients to the proxy (h2c and h2 over TLS), to HTTP/1.1 upstreams, end to end with
real clients: httpx, curl and h2load, and a raw h2 client for what polite clients never do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from h2.errors import ErrorCodes

from remora.proxy.http.h2_downstream import H2DownstreamConnection
from remora.proxy.server import ProxyServer
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy
from tests.proxy.http.h2client import H2Client
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority

_LOGGERS = "type.googleapis.com/envoy.extensions.access_loggers"


def _counter(proxy: ProxyServer, name: str) -> int:
    return int(proxy.store.counter(name).value)


def _gauge(proxy: ProxyServer, name: str) -> int:
    return int(proxy.store.gauge(name).value)


def _h2c() -> httpx.AsyncClient:
    return httpx.AsyncClient(http1=False, http2=True, timeout=10)


async def test_h2c_prior_knowledge_routes_to_http1_upstream() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy, _h2c() as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            reply = await client.get(f"{base}/echo?a=1", headers={"x-test": "yes"})
            assert reply.http_version == "HTTP/2"
            assert reply.status_code == 200
            echoed = reply.json()
            assert echoed["path"] == "/echo"
            assert echoed["headers"]["host"] == f"127.0.0.1:{proxy.listener_port('http')}"
            assert echoed["headers"]["x-test"] == "yes"
            assert echoed["headers"]["x-forwarded-proto"] == "http"
            assert "x-request-id" in echoed["headers"]
            assert reply.headers["server"] == "remora"
            assert "x-envoy-upstream-service-time" in reply.headers
            # A body with a length, and one without (chunked to the HTTP/1.1 upstream).
            sized = await client.post(f"{base}/echo", content=b"x" * 300_000)
            assert sized.json()["body_bytes"] == 300_000

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(20):
                    yield b"y" * 10_000

            streamed = await client.post(f"{base}/echo", content=chunks())
            assert streamed.json()["body_bytes"] == 200_000
            assert streamed.json()["headers"]["transfer-encoding"] == "chunked"
            large = await client.get(f"{base}/bytes/3000000")
            assert len(large.content) == 3_000_000
            head = await client.head(f"{base}/bytes/1000")
            assert head.status_code == 200 and head.content == b""
        assert _counter(proxy, "http.http.downstream_cx_http2_total") == 1
        assert _counter(proxy, "http.http.downstream_cx_http1_total") == 0
        assert _counter(proxy, "http.http.downstream_rq_http2_total") == 5
        assert _counter(proxy, "http.http.downstream_rq_2xx") == 5
        assert _gauge(proxy, "http.http.downstream_cx_http2_active") == 0
        assert _gauge(proxy, "http2.streams_active") == 0


async def test_streams_are_multiplexed_on_one_connection() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy, _h2c() as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            started = asyncio.get_running_loop().time()
            replies = await asyncio.gather(
                *(client.get(f"{base}/delay/300?n={i}") for i in range(40))
            )
            elapsed = asyncio.get_running_loop().time() - started
            assert [r.status_code for r in replies] == [200] * 40
            assert elapsed < 2.5, f"40 streams of 300 ms took {elapsed:.2f} s: not concurrent"
        assert _counter(proxy, "http.http.downstream_cx_http2_total") == 1


async def test_auto_serves_both_protocols_and_http1_codec_refuses_the_preface() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap(
            [http_listener(), http_listener(name="h1only", codec_type="HTTP1")],
            [cluster("backend", [ups[0].port])],
        )
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            async with httpx.AsyncClient() as h1:
                assert (await h1.get(f"http://127.0.0.1:{port}/")).http_version == "HTTP/1.1"
            async with _h2c() as h2:
                assert (await h2.get(f"http://127.0.0.1:{port}/")).http_version == "HTTP/2"
            # The preface a byte at a time: still recognised.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = H2Client(reader, writer)
            client.conn.initiate_connection()
            for byte in client.conn.data_to_send():
                writer.write(bytes([byte]))
                await writer.drain()
            stream = client.request("/")
            assert (await client.response(stream)).status == 200
            await client.close()
            raw = await _exchange_raw(
                proxy.listener_port("h1only"), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            )
            assert raw.startswith(b"HTTP/1.1 400")
        assert _counter(proxy, "http.http.downstream_cx_http1_total") == 1
        assert _counter(proxy, "http.http.downstream_cx_http2_total") == 2
        assert _counter(proxy, "http.http.downstream_cx_total") == 3


async def _exchange_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    reply = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return reply


async def test_http2_codec_only() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener(codec_type="HTTP2")], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            async with _h2c() as h2:
                assert (await h2.get(f"http://127.0.0.1:{port}/")).status_code == 200
            raw = await _exchange_raw(port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert b"HTTP/1.1" not in raw  # a GOAWAY, not an HTTP/1.1 answer


async def test_local_replies_and_access_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    routes = [
        {
            "match": {"prefix": "/direct"},
            "direct_response": {"status": 418, "body": {"inline_string": "teapot"}},
        },
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}},
    ]
    access_log = [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": f"{_LOGGERS}.file.v3.FileAccessLog",
                "path": str(log),
                "log_format": {
                    "text_format_source": {
                        "inline_string": (
                            "%PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:AUTHORITY)%\n"
                        )
                    }
                },
            },
        }
    ]
    async with demo_upstreams(1) as ups:
        config = bootstrap(
            [http_listener(routes=routes, access_log=access_log)],
            [cluster("backend", [ups[0].port])],
        )
        async with running_proxy(config) as proxy, _h2c() as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            direct = await client.get(f"{base}/direct")
            assert (direct.status_code, direct.text) == (418, "teapot")
            assert (await client.get(f"{base}/status/503")).status_code == 503
        for _ in range(50):
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                break
            await asyncio.sleep(0.05)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("HTTP/2 418 - 127.0.0.1:")
    assert lines[1].startswith("HTTP/2 503 - ")


async def test_client_reset_stops_only_its_stream() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            slow = client.request("/delay/2000")
            await asyncio.sleep(0.2)
            client.conn.reset_stream(slow, ErrorCodes.CANCEL)
            client.flush()
            fast = client.request("/echo")
            assert (await client.response(fast)).status == 200
            await client.close()
            for _ in range(50):
                if _counter(proxy, "http.http.downstream_rq_rx_reset") == 1:
                    break
                await asyncio.sleep(0.02)
            assert _counter(proxy, "http.http.downstream_rq_rx_reset") == 1
            assert _counter(proxy, "http2.rx_reset") == 1
            assert _gauge(proxy, "cluster.backend.upstream_rq_active") == 0


async def test_a_client_that_stops_reading_one_stream_stalls_only_that_stream() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            client.conn.increment_flow_control_window(2**30)  # the connection's: never the limit
            client.auto_credit = False
            stalled = client.request("/bytes/20000000")
            # The stream's window (64 KiB) fills and is never credited back.
            await client.until(lambda: len(client.responses[stalled].body) >= 65535, timeout=5)
            client.auto_credit = True
            for i in range(5):
                other = client.request(f"/bytes/100000?i={i}")
                response = await client.response(other)
                assert response.status == 200 and len(response.body) == 100_000
            stalled_response = client.responses[stalled]
            assert not stalled_response.ended
            assert len(stalled_response.body) == 65535
            # The proxy holds a bounded backlog for the stalled stream and has paused its upstream.
            await asyncio.sleep(0.3)
            held = [
                stream.pending_bytes
                for listener in proxy.listeners
                for connection in listener.runtime.connections
                if isinstance(connection, H2DownstreamConnection)
                for stream in connection.streams.values()
            ]
            assert len(held) == 1
            assert held[0] <= 2 * (1 << 20) + 65536, f"{held[0]} bytes held for a stalled stream"
            # Credit it back: the rest arrives.
            client.conn.increment_flow_control_window(2**30, stalled)
            client.conn.increment_flow_control_window(2**30)
            client.flush()
            done = await client.response(stalled, timeout=30)
            assert len(done.body) == 20_000_000
            await client.close()


async def test_upload_to_a_stalled_upstream_holds_back_credit() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap(
            [http_listener(codec_type="HTTP2")],
            [cluster("backend", [ups[0].port])],
        )
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            await client.pump()  # the server's SETTINGS
            body = b"z" * 2_000_000
            stream = client.request("/echo", method="POST", body=b"", end=False)
            sent = 0
            while sent < len(body):
                window = client.conn.local_flow_control_window(stream)
                if window == 0:
                    await client.pump(2)
                    continue
                step = min(window, 16384, len(body) - sent)
                client.conn.send_data(stream, body[sent : sent + step])
                sent += step
                client.flush()
            client.conn.end_stream(stream)
            client.flush()
            response = await client.response(stream)
            assert response.status == 200
            assert json.loads(bytes(response.body))["body_bytes"] == 2_000_000
            await client.close()


async def test_excess_streams_are_refused_and_the_connection_goes_on() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap(
            [http_listener(http2_protocol_options={"max_concurrent_streams": 4})],
            [cluster("backend", [ups[0].port])],
        )
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            # Sent before the server's SETTINGS were read: the client believes it may.
            streams = [client.request(f"/delay/300?n={i}") for i in range(7)]
            results = [await client.response(s) for s in streams]
            assert sum(r.status == 200 for r in results) == 4
            assert sum(r.reset == ErrorCodes.REFUSED_STREAM for r in results) == 3
            again = client.request("/echo")
            assert (await client.response(again)).status == 200
            assert client.goaway is None
            await client.close()


async def test_rapid_reset_closes_the_connection_and_others_keep_working() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            attacker = await H2Client.connect(port)
            await attacker.pump()
            for _ in range(600):
                stream = attacker.request("/delay/1000")
                attacker.conn.reset_stream(stream, ErrorCodes.CANCEL)
            attacker.flush()
            await attacker.until(lambda: attacker.goaway is not None or attacker.closed, 10)
            assert attacker.goaway is not None
            assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            await attacker.close()
            async with _h2c() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
            assert _counter(proxy, "http2.premature_reset") >= 250
            await asyncio.sleep(0.2)
            assert _gauge(proxy, "cluster.backend.upstream_rq_active") == 0


@pytest.mark.parametrize("flood", ["ping", "empty_data", "continuation", "settings"])
async def test_floods_end_with_a_close(flood: str) -> None:
    from hyperframe.frame import (
        ContinuationFrame,
        DataFrame,
        HeadersFrame,
        PingFrame,
        SettingsFrame,
    )

    listener = http_listener()
    listener["per_connection_buffer_limit_bytes"] = 32768
    async with demo_upstreams(1) as ups:
        config = bootstrap([listener], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            # A client that reads nothing, with a receive buffer that fills at once.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
            if flood == "ping":
                # Never read: the PING ACKs pile up in the proxy.
                frames = b"".join(
                    PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(2000)
                )
            elif flood == "settings":
                frames = b"".join(SettingsFrame(0).serialize() for _ in range(2000))
            elif flood == "empty_data":
                headers = HeadersFrame(1, data=_hpack_get())
                headers.flags.add("END_HEADERS")
                frames = headers.serialize() + b"".join(
                    DataFrame(1).serialize() for _ in range(100)
                )
            else:
                headers = HeadersFrame(1, data=_hpack_get())
                frames = headers.serialize() + b"".join(
                    ContinuationFrame(1, data=b"").serialize() for _ in range(200)
                )
            closed = await _sent_until_closed(
                reader, writer, frames, read=flood not in ("ping", "settings")
            )
            assert closed, f"{flood} flood: the connection stayed open"
            async with _h2c() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200


async def _sent_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frames: bytes, read: bool
) -> bool:
    try:
        for _ in range(200):
            writer.write(frames)
            await asyncio.wait_for(writer.drain(), 2)
            if read:
                while True:
                    try:
                        data = await asyncio.wait_for(reader.read(65536), 0.2)
                    except TimeoutError:
                        break
                    if not data:
                        return True
    except (TimeoutError, ConnectionError):
        return True
    finally:
        writer.close()
    return False


def _hpack_get() -> bytes:
    from hpack import Encoder

    return Encoder().encode(
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
    )


async def test_header_list_over_the_limit_is_refused() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap(
            [http_listener(max_request_headers_kb=4)], [cluster("backend", [ups[0].port])]
        )
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            await client.pump()
            client.request("/", headers=[("x-big", "a" * 6000)])
            await client.until(lambda: client.goaway is not None or client.closed)
            assert client.goaway is not None or client.closed
            await client.close()
            assert _counter(proxy, "http2.rx_messaging_error") == 1
            assert ups[0].requests_served == 0


async def test_illegal_field_value_never_reaches_the_upstream() -> None:
    from hpack import Encoder
    from hyperframe.frame import HeadersFrame, SettingsFrame

    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            block = Encoder().encode(
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "x"),
                    ("x-smuggle", "a\r\nGET /admin HTTP/1.1"),
                ]
            )
            headers = HeadersFrame(1, data=block)
            headers.flags.add("END_HEADERS")
            headers.flags.add("END_STREAM")
            raw = await _exchange_raw(
                proxy.listener_port("http"),
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                + SettingsFrame(0).serialize()
                + headers.serialize(),
            )
            assert raw  # the server's SETTINGS and its GOAWAY
            await asyncio.sleep(0.1)
            assert ups[0].requests_served == 0


async def test_drain_sends_goaway_and_lets_open_streams_finish() -> None:
    # nghttp (nghttp2's client, as curl's HTTP/2) goes on reading streams after a graceful
    # GOAWAY; h2's own client, like httpx, closes at any GOAWAY, so it cannot show this.
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}/delay/600"
            client = await asyncio.create_subprocess_exec(
                "nghttp", "-nv", url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            await asyncio.sleep(0.3)
            for listener in proxy.listeners:
                listener.runtime.drain()
            out, _ = await asyncio.wait_for(client.communicate(), 10)
            text = out.decode()
            assert client.returncode == 0, text
            assert "recv GOAWAY" in text and "error_code=NO_ERROR" in text, text
            assert ":status: 200" in text, text
            assert text.index("recv GOAWAY") < text.index(":status: 200"), text


async def test_idle_and_keepalive_timeouts() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap(
            [
                http_listener(
                    common_http_protocol_options={"idle_timeout": "0.3s"},
                ),
                http_listener(
                    name="ka",
                    http2_protocol_options={
                        "connection_keepalive": {"interval": "0.2s", "timeout": "0.2s"}
                    },
                ),
            ],
            [cluster("backend", [ups[0].port])],
        )
        async with running_proxy(config) as proxy:
            idle = await H2Client.connect(proxy.listener_port("http"))
            await idle.until(lambda: idle.closed, 3)
            assert idle.goaway is not None
            # A client that answers PINGs stays; one that does not is closed.
            alive = await H2Client.connect(proxy.listener_port("ka"))
            with pytest.raises(TimeoutError):
                await alive.until(lambda: alive.closed, 1.0)
            await alive.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("ka"))
            from hyperframe.frame import SettingsFrame

            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
            deaf = await asyncio.wait_for(_read_to_close(reader), 3)
            assert deaf
            writer.close()
        assert _counter(proxy, "http2.keepalive_timeout") == 1


async def _read_to_close(reader: asyncio.StreamReader) -> bool:
    while await reader.read(65536):
        pass
    return True


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    ca = Authority()
    cert, key = ca.issue("localhost").write(tmp_path, "server")
    return {"ca": ca.write(tmp_path), "cert": cert, "key": key}


async def test_h2_over_tls_by_alpn(tls_files: dict[str, Path]) -> None:
    socket = tlsconfig.downstream(
        cert=tls_files["cert"], key=tls_files["key"], alpn_protocols=["h2", "http/1.1"]
    )
    async with demo_upstreams(1) as ups:
        listener = tlsconfig.with_tls(http_listener(), socket)
        config = bootstrap([listener], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            context = ssl.create_default_context(cafile=str(tls_files["ca"]))
            async with httpx.AsyncClient(http2=True, verify=context) as client:
                reply = await client.get(f"https://localhost:{port}/echo")
                assert reply.http_version == "HTTP/2"
                assert reply.json()["headers"]["x-forwarded-proto"] == "https"
            async with httpx.AsyncClient(verify=context) as client:
                assert (await client.get(f"https://localhost:{port}/")).http_version == "HTTP/1.1"
            curl = await asyncio.create_subprocess_exec(
                "curl",
                "-s",
                "--http2",
                "--cacert",
                str(tls_files["ca"]),
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                f"https://localhost:{port}/",
                stdout=subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(curl.communicate(), 10)
            assert out.decode() == "2 200"
        assert _counter(proxy, "http.http.downstream_cx_http2_total") == 2
        assert _counter(proxy, "http.http.downstream_cx_ssl_total") == 3
        assert _gauge(proxy, "http.http.downstream_cx_ssl_active") == 0
        assert _gauge(proxy, "http.http.downstream_cx_active") == 0


async def test_curl_and_h2load() -> None:
    if shutil.which("h2load") is None:
        pytest.fail("h2load is missing: `make apt` installs nghttp2-client")
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}/bytes/1024"
            curl = await asyncio.create_subprocess_exec(
                "curl",
                "-s",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code} %{size_download}",
                url,
                stdout=subprocess.PIPE,
            )
            out, _ = await curl.communicate()
            assert out.decode() == "2 200 1024"
            load = await asyncio.create_subprocess_exec(
                "h2load", "-n", "600", "-c", "3", "-m", "10", url, stdout=subprocess.PIPE
            )
            out, _ = await load.communicate()
            text = out.decode()
            assert "600 succeeded, 0 failed" in text, text
            assert "600 2xx" in text, text


async def test_a_bounded_fuzzer_of_client_bytes(caplog: pytest.LogCaptureFixture) -> None:
    """150 mutations of a valid client exchange (preface, SETTINGS, a POST with a body): the
    proxy answers or closes each connection, nothing escapes its code, and once the clients
    are gone no connection or stream is left."""
    import random
    import traceback

    from hpack import Encoder
    from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame

    headers = HeadersFrame(1, data=Encoder().encode([
        (":method", "POST"), (":scheme", "http"), (":path", "/echo"), (":authority", "x"),
        ("content-length", "5"),
    ]))  # fmt: skip
    headers.flags.add("END_HEADERS")
    body = DataFrame(1, data=b"hello")
    body.flags.add("END_STREAM")
    original = (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + SettingsFrame(0).serialize()
        + headers.serialize()
        + body.serialize()
    )
    rng = random.Random(20261207)
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener(codec_type="HTTP2")], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            for _ in range(150):
                data = bytearray(original)
                for _ in range(rng.randint(1, 4)):
                    at = rng.randrange(24, len(data))  # past the preface, mostly
                    if rng.random() < 0.6:
                        data[at] = rng.randrange(256)
                    else:
                        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(bytes(data))
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(reader.read(65536), 2)
                writer.close()
            async with _h2c() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
            for _ in range(100):
                if _gauge(proxy, "http.http.downstream_cx_active") == 0:
                    break
                await asyncio.sleep(0.05)
            assert _gauge(proxy, "http.http.downstream_cx_active") == 0
            assert _gauge(proxy, "http2.streams_active") == 0
            assert _gauge(proxy, "cluster.backend.upstream_rq_active") == 0
    for record in caplog.records:
        if record.exc_info and record.exc_info[2] is not None:
            frames = traceback.extract_tb(record.exc_info[2])
            assert not any("remora/proxy" in f.filename for f in frames), record.getMessage()


async def test_expect_100_continue_gets_an_interim_response_before_the_body() -> None:
    """A client that asks with Expect: 100-continue waits for the 100 before it sends the
    body (curl waits a second); the proxy answers it itself, as on HTTP/1.1."""
    from h2.events import InformationalResponseReceived

    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            stream = client.request(
                "/echo",
                method="POST",
                headers=[("expect", "100-continue"), ("content-length", "5")],
                end=False,
            )

            def interim() -> list[InformationalResponseReceived]:
                return [
                    e
                    for e in client.events
                    if isinstance(e, InformationalResponseReceived) and e.stream_id == stream
                ]

            await client.until(lambda: bool(interim()), 5)
            assert dict(interim()[0].headers)[b":status"] == b"100"
            client.send_body(stream, b"hello")
            reply = await client.response(stream)
            assert reply.status == 200
            echoed = json.loads(reply.body)
            assert "expect" not in echoed["headers"]  # answered here, not passed on
            await client.close()
