"""HTTP/2 to upstreams: clusters that speak it, bridging both ways, the multiplexing pool, flow
control, trailers, resets and GOAWAY, against real servers (a second remora, nginx) and a small
h2 origin that misbehaves on cue (tests/proxy/upstream/h2server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from h2.events import ResponseReceived
from hyperframe.frame import GoAwayFrame

from remora.proxy.server import ProxyServer
from remora.proxy.upstream.h2_upstream import H2UpstreamConnection
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy
from tests.proxy.http.h2client import H2Client
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority
from tests.proxy.upstream.h2server import H2Origin

_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def protocol_options(**config: Any) -> dict[str, Any]:
    return {_OPTIONS: {"@type": f"type.googleapis.com/{_OPTIONS}", **config}}


H2_EXPLICIT = protocol_options(explicit_http_config={"http2_protocol_options": {}})
USE_DOWNSTREAM = protocol_options(
    use_downstream_protocol_config={"http_protocol_options": {}, "http2_protocol_options": {}}
)


def h2_cluster(name: str, port: int, **extra: Any) -> dict[str, Any]:
    extra.setdefault("typed_extension_protocol_options", H2_EXPLICIT)
    return cluster(name, [port], **extra)


def _counter(proxy: ProxyServer, name: str) -> int:
    return int(proxy.store.counter(name).value)


def _gauge(proxy: ProxyServer, name: str) -> int:
    return int(proxy.store.gauge(name).value)


def _h2_connections(proxy: ProxyServer, name: str = "backend") -> list[H2UpstreamConnection]:
    found: list[H2UpstreamConnection] = []
    for host in proxy.clusters[name].hosts:
        for pool in host.h2_pools.values():
            found.extend(pool.connections)
    return found


@asynccontextmanager
async def h2_remora(codec: str = "HTTP2") -> AsyncIterator[tuple[ProxyServer, int]]:
    """A second remora speaking HTTP/2 to clients, in front of the demo upstream: a real h2
    server whose echo shows what reached it."""
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener(codec_type=codec)], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as inner:
            yield inner, inner.listener_port("http")


async def test_http1_client_to_http2_upstream() -> None:
    async with h2_remora() as (inner, port):
        config = bootstrap([http_listener()], [h2_cluster("backend", port)])
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            reply = await client.get(f"{base}/echo?a=1", headers={"x-test": "yes"})
            assert reply.http_version == "HTTP/1.1" and reply.status_code == 200
            echoed = reply.json()
            assert echoed["path"] == "/echo" and echoed["query"] == "a=1"
            assert echoed["headers"]["x-test"] == "yes"
            # :authority became the inner hop's host again.
            assert echoed["headers"]["host"] == f"127.0.0.1:{proxy.listener_port('http')}"
            sized = await client.post(f"{base}/echo", content=b"x" * 500_000)
            assert sized.json()["body_bytes"] == 500_000

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(20):
                    yield b"y" * 10_000

            streamed = await client.post(f"{base}/echo", content=chunks())
            assert streamed.json()["body_bytes"] == 200_000
            large = await client.get(f"{base}/bytes/3000000")
            assert len(large.content) == 3_000_000
            head = await client.head(f"{base}/bytes/1000")
            assert head.status_code == 200 and head.content == b""
            # Many at once ride one connection.
            replies = await asyncio.gather(
                *(client.get(f"{base}/delay/300?n={i}") for i in range(30))
            )
            assert [r.status_code for r in replies] == [200] * 30
        assert _counter(proxy, "cluster.backend.upstream_cx_http2_total") == 1
        assert _counter(proxy, "cluster.backend.upstream_cx_http1_total") == 0
        assert _counter(proxy, "cluster.backend.upstream_rq_2xx") == 35
        assert _counter(inner, "http.http.downstream_cx_http2_total") == 1
        assert _counter(inner, "http.http.downstream_rq_http2_total") == 35
        assert _gauge(proxy, "cluster.backend.http2.streams_active") == 0


async def test_http2_client_to_http2_upstream_and_use_downstream_protocol() -> None:
    # The inner remora speaks both (AUTO), so the outer one's choice shows in its stats.
    async with h2_remora("AUTO") as (inner, port):
        config = bootstrap(
            [http_listener()],
            [h2_cluster("backend", port, typed_extension_protocol_options=USE_DOWNSTREAM)],
        )
        async with running_proxy(config) as proxy:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as h2:
                reply = await h2.post(f"{base}/echo", content=b"z" * 100_000)
                assert reply.http_version == "HTTP/2"
                assert reply.json()["body_bytes"] == 100_000
            async with httpx.AsyncClient(timeout=10) as h1:
                reply = await h1.get(f"{base}/echo")
                assert reply.http_version == "HTTP/1.1" and reply.status_code == 200
        assert _counter(inner, "http.http.downstream_rq_http2_total") == 1
        assert _counter(inner, "http.http.downstream_rq_http1_total") == 1
        assert _counter(proxy, "cluster.backend.upstream_cx_http2_total") == 1
        assert _counter(proxy, "cluster.backend.upstream_cx_http1_total") == 1


async def test_legacy_cluster_http2_protocol_options() -> None:
    async with H2Origin() as origin:
        config = bootstrap(
            [http_listener()],
            [cluster("backend", [origin.port], http2_protocol_options={})],
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(
                f"http://127.0.0.1:{proxy.listener_port('http')}/echo", headers={"te": "trailers"}
            )
            seen = reply.json()
            assert seen["headers"][":scheme"] == "http"
            assert seen["headers"][":method"] == "GET"
            assert seen["headers"][":authority"].startswith("127.0.0.1:")
            assert seen["headers"]["te"] == "trailers"
            assert "host" not in seen["headers"] and "connection" not in seen["headers"]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
async def test_nginx_h2c_upstream(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "1k").write_bytes(b"n" * 1024)
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    # Workers drop to nobody by default, and pytest's directories are root's alone.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""daemon off; worker_processes 1; pid {tmp_path}/nginx.pid; {user}
error_log {tmp_path}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {tmp_path}/access.log;
  client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};
  server {{ listen 127.0.0.1:{port} http2; root {tmp_path}/www; }}
}}
"""
    )
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)])
    try:
        await _wait_port(port)
        config = bootstrap([http_listener()], [h2_cluster("backend", port)])
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            replies = await asyncio.gather(*(client.get(f"{base}/1k") for _ in range(20)))
            assert [(r.status_code, len(r.content)) for r in replies] == [(200, 1024)] * 20, [
                r.text[:200] for r in replies
            ]
            assert (await client.get(f"{base}/missing")).status_code == 404
        log = (tmp_path / "access.log").read_text()
        assert log.count("HTTP/2.0") == 21
        assert _counter(proxy, "cluster.backend.upstream_cx_http2_total") == 1
    finally:
        nginx.terminate()
        nginx.wait(5)


async def test_peer_stream_limit_opens_more_connections() -> None:
    async with H2Origin(max_streams=2) as origin:
        config = bootstrap([http_listener()], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            replies = await asyncio.gather(*(client.get(f"{base}/delay/300") for _ in range(6)))
            assert [r.status_code for r in replies] == [200] * 6
        assert origin.peak <= 2
        assert origin.connections == 3
        assert _counter(proxy, "cluster.backend.upstream_cx_http2_total") == 3


async def test_max_requests_per_connection_and_cold_burst_opens_one_connection() -> None:
    async with H2Origin() as origin:
        config = bootstrap(
            [http_listener()],
            [h2_cluster("backend", origin.port, max_requests_per_connection=2)],
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            for _ in range(5):
                assert (await client.get(f"{base}/echo")).status_code == 200
        assert origin.connections == 3
        assert _counter(proxy, "cluster.backend.upstream_cx_max_requests") == 2
    async with H2Origin() as origin:
        config = bootstrap([http_listener()], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            replies = await asyncio.gather(*(client.get(f"{base}/delay/100") for _ in range(40)))
            assert [r.status_code for r in replies] == [200] * 40
        assert origin.connections == 1


async def test_trailers_reach_http2_clients_and_trailers_only_stays_one_frame() -> None:
    async with H2Origin() as origin:
        config = bootstrap([http_listener()], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            stream = client.request("/trailers", headers=[("te", "trailers")])
            response = await client.response(stream)
            assert response.status == 200 and bytes(response.body) == b"body"
            assert ("grpc-status", "0") in response.trailers
            assert ("x-trailer", "yes") in response.trailers
            only = client.request("/trailers-only", headers=[("te", "trailers")])
            response = await client.response(only)
            assert response.header("grpc-status") == "7"
            heads = [e for e in client.events if isinstance(e, ResponseReceived)]
            assert heads[-1].stream_id == only and heads[-1].stream_ended is not None
            await client.close()
            # An HTTP/1.1 client gets the body; the trailers are not forwarded.
            async with httpx.AsyncClient(timeout=10) as h1:
                reply = await h1.get(f"http://127.0.0.1:{proxy.listener_port('http')}/trailers")
                assert reply.content == b"body"


async def test_refused_stream_is_retried_and_reported(tmp_path: Path) -> None:
    async with H2Origin() as origin:
        listener = http_listener(
            routes=[
                {
                    "match": {"prefix": "/"},
                    "route": {
                        "cluster": "backend",
                        "retry_policy": {"retry_on": "refused-stream", "num_retries": 2},
                    },
                }
            ]
        )
        config = bootstrap([listener], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            reply = await client.get(f"{base}/refuse")
            assert reply.status_code == 503
            assert reply.text.endswith("reset reason: remote refused stream reset")
            assert origin.requests == 3
            assert _counter(proxy, "cluster.backend.upstream_rq_retry") == 2
            assert _counter(proxy, "cluster.backend.http2.rx_reset") == 3
            # A reset after the head cuts the client off: the body cannot be made whole.
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"{base}/reset-after-head")
            h2 = await H2Client.connect(proxy.listener_port("http"))
            stream = h2.request("/reset-after-head")
            response = await h2.response(stream)
            assert response.status == 200 and response.reset is not None
            await h2.close()


async def test_graceful_goaway_finishes_its_streams_and_moves_on() -> None:
    async with H2Origin() as origin:
        config = bootstrap([http_listener()], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            draining = asyncio.ensure_future(client.get(f"{base}/goaway/400"))
            await asyncio.sleep(0.15)  # the GOAWAY has arrived; its stream is still open
            after = await asyncio.gather(*(client.get(f"{base}/echo") for _ in range(5)))
            assert [r.status_code for r in after] == [200] * 5
            reply = await draining
            assert reply.status_code == 200 and reply.content == b"after goaway"
            await asyncio.sleep(0.1)
            # The drained connection closed once its last stream ended.
            assert [c.draining for c in _h2_connections(proxy)] == [False]
        assert origin.goaways_sent == 1
        assert origin.connections == 2
        assert _counter(proxy, "cluster.backend.upstream_cx_close_notify") == 1


async def test_slow_client_stalls_only_its_stream() -> None:
    """A client that reads nothing: its stream's credit stops, the upstream stops sending
    on that stream, and other clients' streams on the same connection go on."""
    async with H2Origin() as origin:
        config = bootstrap(
            [http_listener()],
            [h2_cluster("backend", origin.port, per_connection_buffer_limit_bytes=65536)],
        )
        config["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = 65536
        async with running_proxy(config) as proxy:
            port = proxy.listener_port("http")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            _reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
            writer.write(b"GET /bytes/20000000 HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(1.0)
            async with httpx.AsyncClient(timeout=10) as client:
                reply = await client.get(f"http://127.0.0.1:{port}/bytes/200000")
                assert len(reply.content) == 200_000
            conns = _h2_connections(proxy)
            assert len(conns) == 1  # the second request shared the stalled one's connection
            stalled = [s for s in conns[0].streams.values()]
            assert len(stalled) == 1 and stalled[0]._blocked
            # Held in the proxy: the client's socket buffer plus at most one stream window.
            transport = next(iter(proxy_downstream_transports(proxy)))
            assert transport.get_write_buffer_size() < 65536 + 65535 + 16384
            writer.close()


def proxy_downstream_transports(proxy: ProxyServer) -> list[Any]:
    found = []
    for listener in proxy.listeners:
        for session in listener.runtime.connections:
            transport = getattr(session, "transport", None)
            if transport is not None:
                found.append(transport)
    return found


async def test_upstream_that_stops_reading_stalls_the_client_upload() -> None:
    async with H2Origin() as origin:
        origin.hold_request_credit = True
        config = bootstrap(
            [http_listener()],
            [h2_cluster("backend", origin.port, per_connection_buffer_limit_bytes=65536)],
        )
        config["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = 65536
        async with running_proxy(config) as proxy:
            _reader, writer = await asyncio.open_connection(
                "127.0.0.1", proxy.listener_port("http")
            )
            writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 20000000\r\n\r\n")
            sent = 0
            chunk = b"u" * 65536
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(2.0):
                    while sent < 20_000_000:
                        writer.write(chunk)
                        await writer.drain()
                        sent += len(chunk)
            streams = [s for c in _h2_connections(proxy) for s in c.streams.values()]
            assert len(streams) == 1
            # Bounded: the buffer limit, plus what one socket read brought past it (uvloop
            # reads up to 256 KiB at a time), plus the upstream window's worth in flight.
            assert streams[0].pending_bytes <= 65536 + 262144 + 65536
            assert not streams[0].writable
            assert sent < 10_000_000
            writer.close()


async def test_connect_failure_to_an_http2_cluster() -> None:
    port = _free_port()
    config = bootstrap([http_listener()], [h2_cluster("backend", port)])
    async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
        replies = await asyncio.gather(
            *(client.get(f"http://127.0.0.1:{proxy.listener_port('http')}/") for _ in range(5))
        )
        assert [r.status_code for r in replies] == [503] * 5
        assert "reset reason: connection failure" in replies[0].text
    assert _counter(proxy, "cluster.backend.upstream_cx_connect_fail") >= 1
    assert _gauge(proxy, "cluster.backend.upstream_cx_active") == 0


async def test_upgrade_to_an_http2_cluster_is_refused_clearly() -> None:
    async with H2Origin() as origin:
        listener = http_listener(upgrade_configs=[{"upgrade_type": "websocket"}])
        config = bootstrap([listener], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(
                f"http://127.0.0.1:{proxy.listener_port('http')}/",
                headers={"connection": "upgrade", "upgrade": "websocket"},
            )
            assert reply.status_code == 501
            assert "HTTP/2 upstream" in reply.text
        assert origin.requests == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    ca = Authority()
    cert, key = ca.issue("localhost").write(tmp_path, "server")
    return {"ca": ca.write(tmp_path), "cert": cert, "key": key}


@asynccontextmanager
async def tls_remora(
    tls_files: dict[str, Path], alpn: list[str]
) -> AsyncIterator[tuple[ProxyServer, int]]:
    """A second remora serving TLS with the given ALPN protocols (AUTO codec: ALPN decides)."""
    socket_config = tlsconfig.downstream(
        cert=tls_files["cert"], key=tls_files["key"], alpn_protocols=alpn
    )
    async with demo_upstreams(1) as ups:
        listener = tlsconfig.with_tls(http_listener(), socket_config)
        config = bootstrap([listener], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as inner:
            yield inner, inner.listener_port("http")


async def test_http2_over_tls_offers_h2_by_alpn(tls_files: dict[str, Path]) -> None:
    async with tls_remora(tls_files, ["h2", "http/1.1"]) as (inner, port):
        upstream_tls = tlsconfig.upstream(sni="localhost", ca=tls_files["ca"])
        config = bootstrap(
            [http_listener()], [h2_cluster("backend", port, transport_socket=upstream_tls)]
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(f"http://127.0.0.1:{proxy.listener_port('http')}/echo")
            assert reply.status_code == 200
        assert _counter(inner, "http.http.downstream_cx_ssl_total") == 1
        assert _counter(inner, "http.http.downstream_cx_http2_total") == 1
        assert _counter(proxy, "cluster.backend.upstream_cx_http2_total") == 1


@pytest.mark.parametrize(("alpn", "expect_h2"), [(["h2", "http/1.1"], True), (["http/1.1"], False)])
async def test_auto_config_follows_alpn(
    tls_files: dict[str, Path], alpn: list[str], expect_h2: bool
) -> None:
    async with tls_remora(tls_files, alpn) as (inner, port):
        upstream_tls = tlsconfig.upstream(sni="localhost", ca=tls_files["ca"])
        auto = protocol_options(
            auto_config={"http_protocol_options": {}, "http2_protocol_options": {}}
        )
        config = bootstrap(
            [http_listener()],
            [
                h2_cluster(
                    "backend",
                    port,
                    transport_socket=upstream_tls,
                    typed_extension_protocol_options=auto,
                )
            ],
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=10) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            # A cold burst: one connection learns the answer; all are served.
            replies = await asyncio.gather(*(client.get(f"{base}/delay/100") for _ in range(8)))
            assert [r.status_code for r in replies] == [200] * 8
            for _ in range(3):
                assert (await client.get(f"{base}/echo")).status_code == 200
            active = _gauge(proxy, "cluster.backend.upstream_cx_active")
        http2 = _counter(proxy, "cluster.backend.upstream_cx_http2_total")
        http1 = _counter(proxy, "cluster.backend.upstream_cx_http1_total")
        if expect_h2:
            assert (http2, http1) == (1, 0)
            assert _counter(inner, "http.http.downstream_rq_http2_total") == 11
        else:
            assert http2 == 0 and http1 >= 1
            assert _counter(inner, "http.http.downstream_rq_http1_total") == 11
            assert _counter(proxy, "cluster.backend.upstream_cx_total") == http1
        # Every connection opened, of either protocol, was counted once and is still pooled
        # (the ALPN handover moves the count, it does not double it).
        assert active == http1 + http2


async def test_request_trailers_reach_an_http2_upstream() -> None:
    async with H2Origin() as origin:
        config = bootstrap([http_listener()], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            stream = client.request("/echo", method="POST", body=b"abc", end=False)
            client.conn.send_headers(stream, [("x-checksum", "42")], end_stream=True)
            client.flush()
            response = await client.response(stream)
            seen = json.loads(bytes(response.body))
            assert seen["body_bytes"] == 3
            assert seen["trailers"] == {"x-checksum": "42"}
            await client.close()


async def test_a_client_goaway_lets_its_open_streams_finish() -> None:
    """RFC 9113 §6.8: a client's GOAWAY says it opens no more streams; what it has open is
    still answered, and the connection closes after."""
    async with H2Origin() as origin:
        config = bootstrap([http_listener()], [h2_cluster("backend", origin.port)])
        async with running_proxy(config) as proxy:
            client = await H2Client.connect(proxy.listener_port("http"))
            stream = client.request("/delay/300")
            await asyncio.sleep(0.05)
            # Written past h2, whose own GOAWAY would close its side of the connection.
            client.writer.write(GoAwayFrame(0, last_stream_id=0).serialize())
            response = await client.response(stream)
            assert response.status == 200 and response.ended
            await client.until(lambda: client.closed, 5)
            assert client.closed
