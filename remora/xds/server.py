"""The gRPC shell of the control plane: ADS and the per-type discovery services, SotW and delta.

Each stream is one task reading requests into a queue, plus cache-change notifications into the
same queue; the stream's sans-IO state (`SotwStream`, `DeltaStream`) turns each event into
already-encoded responses. Responses are bytes (see `wire`), so the handlers are registered with
an identity serializer; the service and method names come from the xds-protos descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.cluster.v3 import cds_pb2
from envoy.service.discovery.v3 import ads_pb2, discovery_pb2
from envoy.service.endpoint.v3 import eds_pb2
from envoy.service.listener.v3 import lds_pb2
from envoy.service.route.v3 import rds_pb2

from remora.xds import types
from remora.xds.cache import SnapshotCache
from remora.xds.clip import clip
from remora.xds.delta import DeltaStream, StreamLimitError
from remora.xds.nacks import ID_LIMIT
from remora.xds.sotw import SotwStream
from remora.xds.stats import ControlPlaneStats

log = logging.getLogger("remora.xds.server")

_CHANGED = object()
_END = object()

# (service descriptor, sotw method, delta method, fixed type URL or "" for ADS)
_SERVICES = (
    (ads_pb2.DESCRIPTOR.services_by_name["AggregatedDiscoveryService"], "StreamAggregatedResources",
     "DeltaAggregatedResources", ""),
    (cds_pb2.DESCRIPTOR.services_by_name["ClusterDiscoveryService"], "StreamClusters",
     "DeltaClusters", types.CLUSTER),
    (lds_pb2.DESCRIPTOR.services_by_name["ListenerDiscoveryService"], "StreamListeners",
     "DeltaListeners", types.LISTENER),
    (rds_pb2.DESCRIPTOR.services_by_name["RouteDiscoveryService"], "StreamRoutes",
     "DeltaRoutes", types.ROUTE),
    (eds_pb2.DESCRIPTOR.services_by_name["EndpointDiscoveryService"], "StreamEndpoints",
     "DeltaEndpoints", types.ENDPOINT),
)  # fmt: skip


@dataclass(slots=True)
class StreamInfo:
    """One connected client stream, for the admin endpoint."""

    id: int
    node_id: str
    group: str
    protocol: str  # "sotw" or "delta"
    service: str
    peer: str
    state: SotwStream | DeltaStream
    sent: dict[str, str] = field(default_factory=dict)  # type -> last version sent

    def as_dict(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "node": self.node_id,
            "group": self.group,
            "protocol": self.protocol,
            "service": self.service,
            "peer": self.peer,
            "sent_versions": dict(self.sent),
        }
        if isinstance(self.state, SotwStream):
            info["acked_versions"] = {t: self.state.acked(t) for t in self.sent}
        return info


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    def __init__(self, cache: SnapshotCache, stats: ControlPlaneStats | None = None) -> None:
        self.cache = cache
        self.stats = stats or ControlPlaneStats()
        self.streams: dict[int, StreamInfo] = {}
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; raises OSError naming the address and the kernel's reason."""
        if port != 0:
            _probe_bind(host, port)
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                # gRPC sets SO_REUSEPORT by default: a second control plane on the same address
                # would start, share the port, and sidecars would land on either process.
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers(self._handlers())
        try:
            self.port = server.add_insecure_port(f"{_grpc_host(host)}:{port}")
        except RuntimeError as exc:  # grpc's "Failed to bind to address"
            raise OSError(f"cannot bind {host}:{port}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")
        await server.start()
        self._server = server
        log.info(
            "xDS (ADS, CDS, LDS, RDS, EDS; SotW and delta) on %s:%d", _grpc_host(host), self.port
        )
        return self.port

    async def stop(self, grace: float | None = 0.5) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def _handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers: list[grpc.GenericRpcHandler] = []
        for service, sotw_method, delta_method, fixed in _SERVICES:
            methods = {
                sotw_method: grpc.stream_stream_rpc_method_handler(
                    self._handler(service.full_name, fixed, "sotw"),
                    request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                    response_serializer=_identity,
                ),
                delta_method: grpc.stream_stream_rpc_method_handler(
                    self._handler(service.full_name, fixed, "delta"),
                    request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                    response_serializer=_identity,
                ),
            }
            handlers.append(grpc.method_handlers_generic_handler(service.full_name, methods))
        return handlers

    def _handler(
        self, service: str, fixed: str, protocol: str
    ) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[bytes]]:
        """One gRPC stream handler per (service, protocol); `fixed` pins a per-type service."""
        stream_type = SotwStream if protocol == "sotw" else DeltaStream

        def make(node: base_pb2.Node, group: str) -> SotwStream | DeltaStream:
            return stream_type(node.id, group, self.cache.nacks, fixed)

        async def handler(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            # grpc.aio needs an async generator function to stream responses.
            async for data in self._serve(requests, context, service, protocol, make):
                yield data

        return handler

    async def _serve(
        self,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
        service: str,
        protocol: str,
        make: Callable[[base_pb2.Node, str], SotwStream | DeltaStream],
    ) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in requests:
                    queue.put_nowait(request)
            except (grpc.aio.AioRpcError, asyncio.CancelledError, grpc.RpcError):
                pass
            finally:
                queue.put_nowait(_END)

        reader = asyncio.create_task(read(), name="xds-stream-reader")
        first = await queue.get()
        if first is _END:
            reader.cancel()
            return
        group = self.cache.group(first.node)
        state = make(first.node, group)
        node_id = clip(first.node.id, ID_LIMIT)  # the client's choice, shown and logged
        info = StreamInfo(next(self._ids), node_id, group, protocol, service, context.peer(), state)
        self.streams[info.id] = info
        self.stats.streams_active += 1
        cancel = self.cache.watch(group, lambda: queue.put_nowait(_CHANGED))
        log.info("stream %d open: node %r group %r %s %s", info.id, node_id, clip(group, ID_LIMIT),
                 protocol, service)  # fmt: skip
        try:
            item = first
            while item is not _END:
                snapshot = self.cache.get(group)
                if item is _CHANGED:
                    responses = state.on_snapshot(snapshot)
                else:
                    self._count_request(item, state)
                    try:
                        responses = state.on_request(item, snapshot)
                    except StreamLimitError as exc:
                        log.warning("stream %d (node %r) ended: %s", info.id, node_id, exc)
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
                for response in responses:
                    info.sent[response.type_url] = getattr(response, "version", "") or getattr(
                        response, "system_version", ""
                    )
                    self.stats.inc("responses", response.type_url)
                    self.stats.inc("response_bytes", response.type_url, len(response.data))
                    yield response.data
                item = await queue.get()
        finally:
            cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.streams.pop(info.id, None)
            self.stats.streams_active -= 1
            log.info("stream %d closed (node %r)", info.id, info.node_id)

    def _count_request(self, request: Any, state: SotwStream | DeltaStream) -> None:
        type_url = request.type_url or state.fixed_type
        self.stats.inc("requests", type_url)
        if request.HasField("error_detail"):
            self.stats.inc("nack_requests", type_url)


def _grpc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _probe_bind(host: str, port: int) -> None:
    """Bind the address once with a plain socket, as gRPC will, for the kernel's own reason.

    gRPC reports any bind failure as one opaque message; this names EADDRINUSE, EACCES or an
    unresolvable host, which is what the operator needs to fix the flag.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise OSError(f"cannot bind {host}:{port}: {exc.strerror}") from None
