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
from dataclasses import dataclass

import h11

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


@dataclass(frozen=True)
class Turn:
    """How one request is answered: `delay` before the head, `body_delay` between the head and
    the body, `cut` to close after the head and half the body instead of finishing, `interim`
    a 1xx sent first."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    delay: float = 0.0
    body_delay: float = 0.0
    cut: bool = False
    interim: int = 0  # a 1xx status to send before the response


class TakingTurns:
    """A script (for `scripted_upstream`) that parses HTTP/1.1 with h11 and gives the n-th request,
    counted across connections, the n-th of `turns`; later ones get `then`. Each request's
    fields (lowercase names; repeated ones joined with ", ") and body are kept, in order."""

    def __init__(
        self,
        turns: list[Turn],
        then: Turn | None = None,
        choose: Callable[[dict[str, str]], Turn] | None = None,
    ) -> None:
        self.turns = list(turns)
        self.then = then or Turn()
        self.choose = choose  # picks by the request's fields instead, when arrival order is racy
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def answer_next(self, turn: Turn) -> None:
        """The next request to arrive gets `turn`."""
        n = len(self.requests)
        self.turns = self.turns[:n] + [self.then] * (n - len(self.turns)) + [turn]

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        fields: dict[str, str] = {}
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                fields = {}
                for key, value in event.headers:  # repeated fields join, as RFC 9110 §5.3 allows
                    name, text = key.decode(), value.decode()
                    fields[name] = f"{fields[name]}, {text}" if name in fields else text
                body = b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                index = len(self.requests)
                self.requests.append((fields, body))
                if self.choose is not None:
                    turn = self.choose(fields)
                else:
                    turn = self.turns[index] if index < len(self.turns) else self.then
                if not await self._answer(conn, writer, turn):
                    return
                conn.start_next_cycle()
            else:
                return

    async def _answer(self, conn: h11.Connection, writer: asyncio.StreamWriter, turn: Turn) -> bool:
        if turn.delay:
            await asyncio.sleep(turn.delay)
        if turn.interim:
            informational = h11.InformationalResponse(status_code=turn.interim, headers=[])
            writer.write(conn.send(informational) or b"")
        headers = [*turn.headers, ("content-length", str(len(turn.body)))]
        writer.write(conn.send(h11.Response(status_code=turn.status, headers=headers)) or b"")
        await writer.drain()
        if turn.cut:
            writer.write(turn.body[: len(turn.body) // 2])
            await writer.drain()
            return False
        if turn.body_delay:
            await asyncio.sleep(turn.body_delay)
        writer.write(conn.send(h11.Data(data=turn.body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        return True
