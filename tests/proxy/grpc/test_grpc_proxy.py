"""gRPC through the proxy with real grpcio clients and servers: the four call kinds over h2c and
TLS, metadata and status both ways, `grpc: {}` routes, grpc-timeout as the route timeout,
local replies as trailers-only responses, and the status codes charged to the cluster."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from remora.proxy.server import ProxyServer
from tests.proxy.grpc.service import SERVICE, start_server
from tests.proxy.harness import bootstrap, http_listener, running_proxy
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority
from tests.proxy.upstream.test_h2_upstream import h2_cluster

UNARY = f"/{SERVICE}/Unary"


def _counter(proxy: ProxyServer, name: str) -> int:
    return int(proxy.store.counter(name).value)


@asynccontextmanager
async def grpc_backend() -> AsyncIterator[int]:
    server, port = await start_server()
    try:
        yield port
    finally:
        await server.stop(None)


async def _all_four(channel: grpc.aio.Channel) -> None:
    unary = channel.unary_unary(UNARY)
    call = unary(b"hi", metadata=(("x-caller", "me"),), timeout=10)
    assert await call == b"echo:hi:me"
    assert ("x-initial", "yes") in tuple(await call.initial_metadata())
    assert ("x-trailing", "done") in tuple(await call.trailing_metadata())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await unary(b"fail:no such thing", timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "no such thing"
    stream = channel.unary_stream(f"/{SERVICE}/ServerStream")
    received = [m async for m in stream(b"200,5000", timeout=20)]
    assert len(received) == 200
    assert [int.from_bytes(m[:4], "big") for m in received] == list(range(200))
    upload = channel.stream_unary(f"/{SERVICE}/ClientStream")

    async def messages() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"c" * 20_000

    assert await upload(messages(), timeout=20) == b"100,2000000"
    bidi = channel.stream_stream(f"/{SERVICE}/Bidi")(timeout=20)
    for index in range(20):
        await bidi.write(f"ping{index}".encode())
        assert await bidi.read() == f"ping{index}"[::-1].encode()
    await bidi.done_writing()
    assert await bidi.code() == grpc.StatusCode.OK


async def test_the_four_call_kinds_over_h2c() -> None:
    async with grpc_backend() as port:
        config = bootstrap([http_listener()], [h2_cluster("backend", port)])
        async with (
            running_proxy(config) as proxy,
            grpc.aio.insecure_channel(f"127.0.0.1:{proxy.listener_port('http')}") as channel,
        ):
            await _all_four(channel)
        # The NOT_FOUND is charged to the cluster as Envoy's router does: as a 404.
        assert _counter(proxy, "cluster.backend.upstream_rq_4xx") == 1
        assert _counter(proxy, "cluster.backend.upstream_rq_2xx") == 4
        assert _counter(proxy, "http.http.downstream_rq_2xx") == 5


async def test_the_four_call_kinds_over_tls_both_hops(tmp_path: Path) -> None:
    ca = Authority()
    cert, key = ca.issue("localhost").write(tmp_path, "server")
    ca_file = ca.write(tmp_path)
    async with grpc_backend() as port:
        # The client speaks TLS to the proxy; the proxy speaks TLS to a second remora, which
        # passes h2c on to the gRPC server.
        downstream = tlsconfig.downstream(cert=cert, key=key, alpn_protocols=["h2"])
        inner_config = bootstrap(
            [tlsconfig.with_tls(http_listener(), downstream)], [h2_cluster("backend", port)]
        )
        async with running_proxy(inner_config) as inner:
            upstream = tlsconfig.upstream(sni="localhost", ca=ca_file)
            outer_config = bootstrap(
                [tlsconfig.with_tls(http_listener(), downstream)],
                [h2_cluster("backend", inner.listener_port("http"), transport_socket=upstream)],
            )
            async with running_proxy(outer_config) as outer:
                credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
                target = f"localhost:{outer.listener_port('http')}"
                async with grpc.aio.secure_channel(target, credentials) as channel:
                    await _all_four(channel)
            assert _counter(inner, "http.http.downstream_cx_ssl_total") == 1
            assert _counter(outer, "http.http.downstream_cx_http2_total") == 1


async def test_grpc_route_match_and_local_replies_are_trailers_only() -> None:
    async with grpc_backend() as port:
        listener = http_listener(
            routes=[
                {"match": {"prefix": "/", "grpc": {}}, "route": {"cluster": "backend"}},
                {"match": {"prefix": "/"}, "direct_response": {"status": 418}},
            ]
        )
        config = bootstrap(
            [listener], [h2_cluster("backend", port), h2_cluster("nowhere", _free_port())]
        )
        async with running_proxy(config) as proxy:
            target = f"127.0.0.1:{proxy.listener_port('http')}"
            async with grpc.aio.insecure_channel(target) as channel:
                assert await channel.unary_unary(UNARY)(b"x", timeout=10) == b"echo:x:"
            # curl is not gRPC: the second route answers it.
            curl = await asyncio.create_subprocess_exec(
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                "--http2-prior-knowledge", f"http://{target}/", stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await curl.communicate()
            assert out == b"418"
        # A gRPC caller whose cluster cannot be reached gets UNAVAILABLE, as a trailers-only
        # response carrying the proxy's reason.
        set_cluster(config, "nowhere")
        async with running_proxy(config) as proxy:
            target = f"127.0.0.1:{proxy.listener_port('http')}"
            async with grpc.aio.insecure_channel(target) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary(UNARY)(b"x", timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "reset reason: connection failure" in (info.value.details() or "")
            assert _counter(proxy, "http.http.downstream_rq_2xx") == 1  # HTTP 200 on the wire
            assert _counter(proxy, "cluster.nowhere.upstream_rq_5xx") == 1


def set_cluster(config: dict[str, Any], name: str) -> None:
    routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]["route_config"]["virtual_hosts"][0]["routes"]
    routes[0]["route"]["cluster"] = name


async def test_grpc_timeout_becomes_the_route_timeout() -> None:
    async with grpc_backend() as port:
        listener = http_listener(
            routes=[
                {
                    "match": {"prefix": "/"},
                    "route": {
                        "cluster": "backend",
                        "timeout": "30s",
                        "max_stream_duration": {"grpc_timeout_header_max": "0.5s"},
                    },
                }
            ]
        )
        config = bootstrap([listener], [h2_cluster("backend", port)])
        async with running_proxy(config) as proxy:
            target = f"127.0.0.1:{proxy.listener_port('http')}"
            async with grpc.aio.insecure_channel(target) as channel:
                unary = channel.unary_unary(UNARY)
                # The caller allows 20 s; the route caps it at 0.5 s and the proxy gives up
                # then, saying DEADLINE_EXCEEDED, with the route timeout's flag and stat.
                started = asyncio.get_running_loop().time()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await unary(b"sleep:3", timeout=20)
                elapsed = asyncio.get_running_loop().time() - started
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert info.value.details() == "upstream request timeout"
                assert 0.4 < elapsed < 2.0
                # Within the cap, the caller's own deadline is the one that applies.
                assert await unary(b"sleep:0.1", timeout=5) == b"echo:sleep:0.1:"
            assert _counter(proxy, "cluster.backend.upstream_rq_timeout") == 1


async def test_a_caller_that_gives_up_cancels_the_upstream_call() -> None:
    cancelled = asyncio.Event()

    async def slow(request: bytes, context: Any) -> bytes:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "slow.Service", {"Wait": grpc.unary_unary_rpc_method_handler(slow)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = bootstrap([http_listener()], [h2_cluster("backend", port)])
        async with running_proxy(config) as proxy:
            target = f"127.0.0.1:{proxy.listener_port('http')}"
            async with grpc.aio.insecure_channel(target) as channel:
                # The caller cancels rather than setting a deadline: a grpc-timeout would
                # reach the server too, which could then end the call itself first.
                call = channel.unary_unary("/slow.Service/Wait")(b"")
                await asyncio.sleep(0.3)
                assert call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
            await asyncio.wait_for(cancelled.wait(), 5)
            assert _counter(proxy, "cluster.backend.http2.tx_reset") == 1
    finally:
        await server.stop(None)


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed")
async def test_h2load_through_to_an_http2_upstream() -> None:
    # A second remora as the HTTP/2 origin, answering directly.
    origin_listener = http_listener(
        codec_type="HTTP2",
        routes=[
            {
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "x" * 1024}},
            }
        ],
    )
    async with running_proxy(bootstrap([origin_listener], [])) as origin:
        config = bootstrap([http_listener()], [h2_cluster("backend", origin.listener_port("http"))])
        async with running_proxy(config) as proxy:
            run = await asyncio.create_subprocess_exec(
                "h2load", "-n", "2000", "-c", "4", "-m", "10",
                f"http://127.0.0.1:{proxy.listener_port('http')}/",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(run.communicate(), 60)
            text = out.decode()
            assert "2000 succeeded, 0 failed, 0 errored" in text, text
            assert "status codes: 2000 2xx" in text, text
        assert _counter(proxy, "cluster.backend.upstream_cx_http2_total") == 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
