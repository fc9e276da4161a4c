"""A TLS client on memory BIOs over a raw connection, for tests that must send what a real TLS
stack would not: junk records after a handshake, close_notify followed by a FIN."""

from __future__ import annotations

import asyncio
import ssl


async def handshake(
    context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A completed client handshake: the TLS object and its (incoming, outgoing) BIOs; what
    it still has to send is left in `outgoing`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            client.do_handshake()
            return client, incoming, outgoing
        except ssl.SSLWantReadError:
            writer.write(outgoing.read())
            incoming.write(await asyncio.wait_for(reader.read(65536), 5))
