"""Closing with unread request bytes must not reset away the response the client is owed."""

from __future__ import annotations

import asyncio

from tests.proxy.harness import bootstrap, http_listener, running_proxy


async def test_local_reply_during_an_upload_reaches_the_client() -> None:
    routes = [
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 403, "body": {"inline_string": "no"}},
        }
    ]
    async with running_proxy(bootstrap([http_listener(routes=routes)], [])) as proxy:
        port = proxy.listener_port("http")
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n")
            writer.write(b"a" * 200_000)  # part of the body; the proxy answers before reading it
            await asyncio.sleep(0.05)
            try:
                # Keep sending while the reply is on its way, as an uploading client does.
                writer.write(b"b" * 200_000)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                pass  # the proxy may stop reading; what matters is what arrives
            try:
                received = await asyncio.wait_for(reader.read(), 5)
            except ConnectionResetError:
                received = b"<reset>"
            writer.close()
            assert received.startswith(b"HTTP/1.1 403"), received[:60]
            assert received.endswith(b"no")
