"""`proxy_http_call`: one HTTP/1.1 request from a filter to a cluster, with a deadline.

The data path's connection pools are typed to the connection manager's own exchanges (mypyc), so
a filter's call goes on a connection of its own, to a host the cluster's load balancer picks,
through the cluster's TLS settings, framed by h11. One connection per call keeps a slow or
hostile callee from holding anything the proxy's own traffic needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import h11

from remora.proxy.tls.layer import open_stream
from remora.proxy.upstream.cluster import Cluster
from remora.wasm.proxywasm.abi import Pairs
from remora.wasm.proxywasm.vm import HttpCallResponse

log = logging.getLogger("remora.proxy.wasm")

MAX_RESPONSE_BYTES = 4 << 20


class CallFailed(Exception):
    pass


def request_parts(headers: Pairs) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """(:method, :path, regular headers with host from :authority) from a Proxy-Wasm map."""
    pseudo = {k: v for k, v in headers if k.startswith(b":")}
    regular = [(b"host", pseudo.get(b":authority", b""))]
    regular += [(k, v) for k, v in headers if not k.startswith(b":") and k != b"host"]
    return pseudo.get(b":method", b"GET"), pseudo.get(b":path", b"/"), regular


async def call_cluster(
    cluster: Cluster, headers: Pairs, body: bytes, timeout: float
) -> HttpCallResponse:
    host = cluster.pick(None)
    if host is None:
        raise CallFailed(f"cluster {cluster.name}: no healthy upstream")
    async with asyncio.timeout(timeout):
        reader, writer = await open_stream(
            host.address, host.port, cluster.config.tls, cluster.tls_stats, cluster.where
        )
        try:
            return await _exchange(reader, writer, headers, body)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: Pairs, body: bytes
) -> HttpCallResponse:
    method, target, fields = request_parts(headers)
    connection = h11.Connection(h11.CLIENT)
    fields = [(k, v) for k, v in fields if k not in (b"content-length", b"transfer-encoding")]
    if body or method not in (b"GET", b"HEAD"):
        fields.append((b"content-length", str(len(body)).encode()))
    try:
        out = connection.send(h11.Request(method=method, target=target, headers=fields))
        if body:
            out += connection.send(h11.Data(data=body))
        out += connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise CallFailed(f"the filter's request is not valid HTTP/1.1: {exc}") from None
    writer.write(out)
    status = 0
    response_headers: Pairs = []
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            raise CallFailed(f"bad response: {exc}") from None
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            connection.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            response_headers = [(k.lower(), v) for k, v in event.headers]
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_RESPONSE_BYTES:
                raise CallFailed(f"response body past {MAX_RESPONSE_BYTES} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    return HttpCallResponse(
        [(b":status", str(status).encode()), *response_headers], b"".join(chunks), []
    )
