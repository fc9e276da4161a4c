"""A gRPC service with one method of each kind, on grpcio's asyncio server, with bytes in and
out (no generated code): what the proxy must carry is framing, metadata and status, not types."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

SERVICE = "remora.test.Echo"


async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    metadata = dict(context.invocation_metadata() or ())
    if request.startswith(b"fail:"):
        await context.abort(grpc.StatusCode.NOT_FOUND, request[5:].decode())
    if request.startswith(b"sleep:"):
        await asyncio.sleep(float(request[6:]))
    await context.send_initial_metadata((("x-initial", "yes"),))
    context.set_trailing_metadata((("x-trailing", "done"),))
    return b"echo:" + request + b":" + str(metadata.get("x-caller", "")).encode()


async def server_stream(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    count, size = (int(v) for v in request.split(b","))
    for index in range(count):
        yield index.to_bytes(4, "big") + b"s" * size


async def client_stream(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
) -> bytes:
    total = count = 0
    async for message in requests:
        total += len(message)
        count += 1
    return f"{count},{total}".encode()


async def bidi(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message[::-1]


def handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


async def start_server() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port
