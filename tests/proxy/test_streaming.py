"""Large transfers stream through a separate proxy process whose memory stays bounded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener
from tests.proxy.procs import peak_rss_mib, rss_mib, start_proxy_process

GIB = 1024**3


async def _curl(*args: str) -> str:
    process = await asyncio.create_subprocess_shell(" ".join(args), stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0, args
    return out.decode()


async def test_1gib_upload_and_download_keep_rss_low(tmp_path: Path) -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])], admin=False)
        process, ports = await start_proxy_process(config, tmp_path)
        try:
            url = f"http://127.0.0.1:{ports['http']}"
            size = await _curl("curl -s -o /dev/null -w '%{size_download}'", f"{url}/bytes/{GIB}")
            assert int(size) == GIB
            out = await _curl(
                f"head -c {GIB} /dev/zero | curl -s -T - -H 'expect:'", f"{url}/upload"
            )
            assert json.loads(out)["body_bytes"] == GIB
            assert peak_rss_mib(process.pid) < 100
        finally:
            process.terminate()
            await process.wait()


async def test_client_that_stops_reading_does_not_grow_memory(tmp_path: Path) -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])], admin=False)
        process, ports = await start_proxy_process(config, tmp_path)
        try:
            before = rss_mib(process.pid)
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["http"])
            writer.write(f"GET /bytes/{GIB} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            await reader.readexactly(1024)  # the response started...
            await asyncio.sleep(1.5)  # ...and then the client reads nothing
            grown = rss_mib(process.pid) - before
            assert grown < 20, f"proxy grew by {grown:.1f} MiB for a stalled client"
            writer.close()
        finally:
            process.terminate()
            await process.wait()


async def test_upstream_that_stops_reading_an_upload_does_not_grow_memory(tmp_path: Path) -> None:
    from tests.proxy.scripted import read_head, scripted_upstream

    size = 100 * 1024 * 1024
    stalled = asyncio.Event()
    resume = asyncio.Event()

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await reader.readexactly(1024 * 1024)
        stalled.set()
        await resume.wait()  # stops reading while the client keeps sending
        remaining = size - 1024 * 1024
        while remaining:
            remaining -= len(await reader.read(min(remaining, 1 << 20)))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with scripted_upstream(slow_reader) as up:
        config = bootstrap([http_listener()], [cluster("backend", [up.port])], admin=False)
        process, ports = await start_proxy_process(config, tmp_path)
        try:
            before = rss_mib(process.pid)
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["http"])
            writer.write(f"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: {size}\r\n\r\n".encode())

            async def send() -> None:
                block = b"u" * (1 << 20)
                for _ in range(size // len(block)):
                    writer.write(block)
                    await writer.drain()

            sender = asyncio.create_task(send())
            await asyncio.wait_for(stalled.wait(), 10)
            await asyncio.sleep(1.0)
            grown = rss_mib(process.pid) - before
            assert not sender.done()  # the client was made to wait, not buffered for
            resume.set()
            await asyncio.wait_for(sender, 30)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            assert grown < 20, f"proxy grew by {grown:.1f} MiB for a stalled upstream"
            writer.close()
        finally:
            process.terminate()
            await process.wait()


async def test_client_pipelining_local_replies_without_reading_does_not_grow_memory(
    tmp_path: Path,
) -> None:
    """Direct responses need no upstream to stall on: the proxy itself must stop reading."""
    routes = [
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": "r" * 60000}},
        }
    ]
    listener = http_listener(routes=routes)
    route_config = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    route_config["max_direct_response_body_size_bytes"] = 65536
    config = bootstrap([listener], [], admin=False)
    process, ports = await start_proxy_process(config, tmp_path)
    try:
        before = rss_mib(process.pid)
        _, writer = await asyncio.open_connection("127.0.0.1", ports["http"])
        batch = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n" * 1000

        async def send() -> None:
            for _ in range(1000):  # 1M requests: 60 GB of responses if all were answered
                writer.write(batch)
                await writer.drain()

        sender = asyncio.create_task(send())
        await asyncio.sleep(2.0)
        grown = rss_mib(process.pid) - before
        sent_everything = sender.done()
        sender.cancel()
        writer.transport.abort()
        assert grown < 30, f"proxy grew by {grown:.1f} MiB for a client that does not read"
        assert not sent_everything, "the proxy never stopped reading"
    finally:
        process.terminate()
        await process.wait()
