"""Upstreams that misbehave on purpose: a raw socket per connection, driven by a test's script.

The demo upstream is correct by design; these peers send exactly the bytes a test names (early
responses, close-delimited bodies, interim responses, garbage), and count their connections so a
test can tell whether the proxy reused one. A blackhole listener never completes a handshake, so
connects to it hang until the proxy gives up or is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ScriptedUpstream:
    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self.requests: list[bytes] = []  # request heads, in arrival order


@asynccontextmanager
async def scripted_upstream(script: Script) -> AsyncIterator[ScriptedUpstream]:
    """Run `script(reader, writer)` for each connection; the writer is closed when it returns."""
    upstream = ScriptedUpstream(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@asynccontextmanager
async def blackhole() -> AsyncIterator[int]:
    """A port whose accept queue is full: new connects get no SYN-ACK and hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):  # the kernel queues backlog + 1; extra attempts just time out
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
