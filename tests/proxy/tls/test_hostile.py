"""A TLS port under attack: garbage, mangled ClientHellos and junk after the handshake.

Invariants: no byte of application data leaves for a peer that did not complete a good
handshake, every such connection is closed, nothing raises into the event loop, and a good
client is served afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from remora.proxy.tls.client_hello import inspect
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy
from tests.proxy.tls import bioclient, tlsconfig
from tests.proxy.tls.pki import Authority


def client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight a real client sends, from a memory-BIO handshake that goes no further."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def mutate(rng: random.Random, data: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return data[: rng.randrange(1, len(data))]  # truncated
    if choice == 1:
        mangled = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        return bytes(mangled)
    if choice == 2:
        return data + rng.randbytes(rng.randrange(1, 2000))  # hello, then junk
    if choice == 3:
        return bytes([0x16, 0x03, 0x01, 0xFF, 0xFF]) + rng.randbytes(rng.randrange(0, 400))
    return rng.randbytes(rng.randrange(1, 3000))


async def _one(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        return b""
    finally:
        writer.close()


# A warning here is an exception raised into the void, in our code or in Python's ssl: it fails.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_a_tls_port_survives_a_bounded_fuzzer(tmp_path: Path) -> None:
    ca = Authority()
    cert, key = ca.issue().write(tmp_path, "server")
    ca_path = ca.write(tmp_path)
    listener = tlsconfig.with_tls(
        http_listener(name="front"), tlsconfig.downstream(cert=cert, key=key)
    )
    listener["stat_prefix"] = "front"
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    context = ssl.create_default_context(cafile=str(ca_path))
    hello = client_hello(context)
    rng = random.Random(20261207)
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("front")
        for _ in range(12):
            batch = [_one(port, mutate(rng, hello)) for _ in range(20)]
            for answer in await asyncio.gather(*batch):
                assert b"HTTP/1.1" not in answer
                # Whatever came back is TLS records (a handshake or an alert), never plaintext.
                assert not answer or answer[0] in (0x15, 0x16), answer[:16]
        async with httpx.AsyncClient(verify=context) as client:
            assert (await client.get(f"https://localhost:{port}/")).status_code == 200
        store = proxy.store
        assert store.counter("http.front.downstream_rq_total").value == 1
        assert store.counter("listener.front.ssl.connection_error").value > 100
    assert loop_errors == []


async def test_junk_after_the_handshake_closes_only_that_connection(tmp_path: Path) -> None:
    ca = Authority()
    cert, key = ca.issue().write(tmp_path, "server")
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
    listener = tlsconfig.with_tls(
        http_listener(name="front"), tlsconfig.downstream(cert=cert, key=key)
    )
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("front")
        # A real handshake over a raw socket, then bytes that are no TLS record.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        _, _, outgoing = await bioclient.handshake(context, reader, writer)
        writer.write(outgoing.read())
        writer.write(b"\x17\x03\x03\x00\x10" + b"\x00" * 16)  # an application record, bad MAC
        rest = await asyncio.wait_for(reader.read(), 5)
        assert b"HTTP" not in rest
        writer.close()
        async with httpx.AsyncClient(verify=context) as client:
            assert (await client.get(f"https://localhost:{port}/")).status_code == 200


def test_a_client_hello_in_tiny_records_is_refused_in_bounded_time() -> None:
    context = ssl.create_default_context()
    body = client_hello(context)[5:]
    split = b"".join(bytes([0x16, 3, 1, 0, 1, byte]) for byte in body)
    started = time.monotonic()
    for end in range(100, len(split), 100):  # as it arrives, segment by segment
        found = inspect(split[:end])
        if found is not None:
            break
    assert found is not None and found.is_tls and found.malformed
    assert time.monotonic() - started < 0.5
    # A ClientHello in a few records (allowed by TLS) is still read.
    two = bytes([0x16, 3, 1]) + (100).to_bytes(2, "big") + body[:100]
    two += bytes([0x16, 3, 1]) + (len(body) - 100).to_bytes(2, "big") + body[100:]
    again = inspect(two)
    assert again is not None and not again.malformed
