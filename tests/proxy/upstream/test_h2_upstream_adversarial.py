"""A hostile HTTP/2 upstream: raw frames the h2 origin would never send, and a bounded fuzzer.

Whatever an upstream sends, the proxy answers each client (a 5xx, or a cut-off response once a
head went out), keeps serving other clusters, and holds nothing afterwards: no active request,
stream or connection is left behind.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    HeadersFrame,
    PushPromiseFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from remora.proxy.server import ProxyServer
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy
from tests.proxy.upstream.test_h2_upstream import h2_cluster

# What an upstream sends: its first bytes at once (a server's SETTINGS come first, RFC 9113
# §3.4), and the rest once the proxy's request has arrived.
Script = Callable[[], tuple[bytes, bytes]]
# The frame header of the proxy's first request (a HEADERS frame, type 1, on stream 1, with
# END_HEADERS, and END_STREAM or not).
_REQUEST_HEADERS = (b"\x01\x05\x00\x00\x00\x01", b"\x01\x04\x00\x00\x00\x01")


def _headers(fields: list[tuple[str, str]], stream: int = 1, end: bool = False) -> bytes:
    frame = HeadersFrame(stream, data=Encoder().encode(fields))
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def _settings() -> bytes:
    return SettingsFrame(0).serialize() + SettingsFrame(0, flags=["ACK"]).serialize()


def good_response() -> bytes:
    body = DataFrame(1, data=b"hello")
    body.flags.add("END_STREAM")
    return _headers([(":status", "200")]) + body.serialize()


def after_settings(response: bytes) -> Script:
    return lambda: (_settings(), response)


@asynccontextmanager
async def hostile(script: Script) -> AsyncIterator[int]:
    """A server that, per connection, sends `script()`'s first bytes, waits for the proxy's
    request, sends the rest whatever they are, and closes a moment later."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first, rest = script()
            writer.write(first)
            seen = b""
            # The preface and SETTINGS, then a HEADERS frame (type 1) for the request.
            while not any(marker in seen for marker in _REQUEST_HEADERS):
                data = await asyncio.wait_for(reader.read(65536), 2)
                if not data:
                    return
                seen += data
            writer.write(rest)
            await writer.drain()
            await asyncio.sleep(0.05)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def _settled(proxy: ProxyServer, name: str = "backend") -> None:
    """Nothing left behind once the dust settles."""
    for _ in range(100):
        active = proxy.store.gauge(f"cluster.{name}.upstream_rq_active").value
        cx = proxy.store.gauge(f"cluster.{name}.upstream_cx_active").value
        streams = proxy.store.gauge(f"cluster.{name}.http2.streams_active").value
        if active == 0 and cx == 0 and streams == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"left behind: {active} requests, {cx} connections, {streams} streams")


def _case(frames: Callable[[], bytes]) -> Script:
    return lambda: (_settings(), frames())


_PUSH = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
_OVERFLOW = WindowUpdateFrame(0, window_increment=2**31 - 1).serialize()
_SHORT = _headers([(":status", "200"), ("content-length", "100")])
CASES: dict[str, tuple[Script, int]] = {
    # (what the upstream sends, the status the client gets; -1: a head, then a cut-off body)
    "not HTTP/2 at all": (lambda: (b"HTTP/1.1 400 Bad Request\r\n\r\n", b""), 503),
    "an uppercase field name": (
        _case(lambda: _headers([(":status", "200"), ("X-Bad", "1")])), 502),
    "no :status": (_case(lambda: _headers([("server", "x")], end=True)), 502),
    "a status that is no number": (_case(lambda: _headers([(":status", "2xx")], end=True)), 502),
    "a connection-specific field": (
        _case(lambda: _headers([(":status", "200"), ("connection", "close")], end=True)), 502),
    "a head too large": (
        _case(lambda: _headers([(":status", "200"), ("x-big", "v" * 5000)], end=True)), 502),
    "a push promise, though push is off": (
        _case(lambda: PushPromiseFrame(1, promised_stream_id=2, data=Encoder().encode(_PUSH),
                                       flags=["END_HEADERS"]).serialize()), 502),
    "DATA on a stream never opened": (_case(lambda: DataFrame(7, data=b"x").serialize()), 502),
    "a window overflow": (_case(lambda: _OVERFLOW + _OVERFLOW), 502),
    "the connection closes before any answer": (_case(lambda: b""), 503),
    "a body, then the connection closes mid-stream": (
        _case(lambda: _SHORT + DataFrame(1, data=b"short").serialize()), -1),
}  # fmt: skip


def _no_crash(caplog: pytest.LogCaptureFixture) -> None:
    """No exception escaped remora's own code into the event loop's handler."""
    for record in caplog.records:
        if record.exc_info and record.exc_info[2] is not None:
            frames = traceback.extract_tb(record.exc_info[2])
            assert not any("remora/proxy" in frame.filename for frame in frames), (
                record.getMessage(),
                traceback.format_exception(*record.exc_info),
            )


async def test_hostile_frames_each_get_a_clear_answer(caplog: pytest.LogCaptureFixture) -> None:
    for name, (script, expected) in CASES.items():
        async with hostile(script) as port, demo_upstreams(1) as ups:
            config = bootstrap(
                [http_listener()],
                [
                    h2_cluster(
                        "backend",
                        port,
                        typed_extension_protocol_options={
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                "@type": "type.googleapis.com/envoy.extensions.upstreams.http."
                                "v3.HttpProtocolOptions",
                                "explicit_http_config": {"http2_protocol_options": {}},
                                "common_http_protocol_options": {"max_response_headers_kb": 4},
                            }
                        },
                    ),
                    cluster("healthy", [ups[0].port]),
                ],
            )
            async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=5) as client:
                base = f"http://127.0.0.1:{proxy.listener_port('http')}"
                if expected < 0:
                    # A head went out: the client's response is cut short, not made whole.
                    try:
                        reply = await client.get(f"{base}/")
                    except httpx.RemoteProtocolError:
                        pass
                    else:
                        raise AssertionError(f"{name}: a truncated body arrived as {reply}")
                else:
                    reply = await client.get(f"{base}/")
                    assert reply.status_code == expected, (name, reply.status_code, reply.text)
                    if name == "the connection closes before any answer":
                        # The connection went, not a stream: Envoy's UC, in its words.
                        assert reply.text.endswith("reset reason: connection termination")
                await _settled(proxy)
    _no_crash(caplog)


async def test_a_bounded_fuzzer_of_upstream_bytes(caplog: pytest.LogCaptureFixture) -> None:
    """100 mutations of a valid response (bytes flipped, cut, repeated): every request is
    answered or cut off within its timeout, and nothing stays open afterwards."""
    rng = random.Random(20261207)
    split = len(_settings())
    original = _settings() + good_response()

    def mutate() -> tuple[bytes, bytes]:
        data = _mutated()
        return data[:split], data[split:]

    def _mutated() -> bytes:
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            at = rng.randrange(len(data))
            if kind < 0.5:
                data[at] = rng.randrange(256)
            elif kind < 0.7:
                del data[at:]
                if not data:
                    data = bytearray(original[:9])
            elif kind < 0.85:
                data[at:at] = data[at : at + rng.randint(1, 20)]
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return bytes(data)

    outcomes: dict[str, int] = {}
    async with hostile(mutate) as port, demo_upstreams(1) as ups:
        config = bootstrap(
            [http_listener()],
            [h2_cluster("backend", port), cluster("healthy", [ups[0].port])],
        )
        listener = config["static_resources"]["listeners"][0]
        routes = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        routes["virtual_hosts"][0]["routes"].insert(
            0, {"match": {"prefix": "/healthy"}, "route": {"cluster": "healthy", "timeout": "2s"}}
        )
        routes["virtual_hosts"][0]["routes"][1]["route"]["timeout"] = "0.5s"
        async with running_proxy(config) as proxy, httpx.AsyncClient(timeout=5) as client:
            base = f"http://127.0.0.1:{proxy.listener_port('http')}"
            for _ in range(100):
                try:
                    reply = await client.get(f"{base}/")
                    key = str(reply.status_code)
                except httpx.RemoteProtocolError:
                    key = "cut off"
                outcomes[key] = outcomes.get(key, 0) + 1
            assert (await client.get(f"{base}/healthy")).status_code == 200
            await _settled(proxy)
    _no_crash(caplog)
    assert set(outcomes) <= {"200", "502", "503", "504", "cut off"}, outcomes
    assert outcomes.get("502", 0) > 0 and outcomes.get("200", 0) > 0, outcomes
