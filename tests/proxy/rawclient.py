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
