"""A raw TCP client for tests that must send exactly the bytes a real client library would not."""

from __future__ import annotations

import asyncio


async def send_and_read(
    port: int,
    data: bytes,
    timeout: float = 5.0,
    until: bytes | None = None,
    host: str = "127.0.0.1",
) -> bytes:
    """Send `data`, then read until the peer closes (or `until` appears, or the timeout)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
                if until is not None and until in received:
                    break
    except (TimeoutError, ConnectionResetError):
        pass  # a reset is how a proxy ends a connection with unread input
    finally:
        writer.close()
    return bytes(received)


def split_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split concatenated content-length-framed responses (enough for pipelining tests)."""
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        responses.append((status, headers, rest[:length]))
        data = rest[length:]
    return responses


class Response:
    """One response as read off the wire: enough framing to check what a client would see."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers!r}, {self.body[:80]!r})"


async def read_response(
    reader: asyncio.StreamReader, method: str = "GET", timeout: float = 5.0
) -> Response:
    """Read one response (skipping 1xx), framed by length, chunked coding or close."""
    async with asyncio.timeout(timeout):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = []
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers.append((name.strip().lower(), value.strip()))
            if status >= 200 or status == 101:
                break
        response = Response(status, headers, b"")
        if method == "HEAD" or status in (101, 204, 304):
            return response
        if (response.header("transfer-encoding") or "").lower() == "chunked":
            body = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                body += await reader.readexactly(size)
                assert await reader.readexactly(2) == b"\r\n"
            response.body = bytes(body)
        elif response.header("content-length") is not None:
            response.body = await reader.readexactly(int(response.header("content-length") or 0))
        else:
            response.body = await reader.read()
        return response
