"""The proxy's ADS client: one gRPC stream to the control plane, applied to a `ProxyServer`.

The protocol lives in `ClientState`; this shell only moves messages and applies accepted config
(clusters first, then listeners, and only then ACKs, as Envoy does). When the control plane is
unreachable the proxy keeps serving what it has and retries with jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format

from remora.config.compile import ProxyConfig
from remora.proxy.server import ProxyServer
from remora.xds import types
from remora.xds.client_state import ClientState

log = logging.getLogger("remora.xds.client")

USER_AGENT = "remora"


def node_of(config: ProxyConfig) -> base_pb2.Node:
    node = base_pb2.Node()
    json_format.ParseDict(config.source.get("node", {}), node)
    node.user_agent_name = USER_AGENT
    return node


class AdsClient:
    def __init__(
        self,
        server: ProxyServer,
        target: str,
        backoff_base: float = 0.25,
        backoff_max: float = 10.0,
    ) -> None:
        config = server.config
        ads = config.ads
        self.server = server
        self.target = target
        self.state = ClientState(
            node_of(config), ads.lds if ads else True, ads.cds if ads else True
        )
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.connected = False
        self.responses = 0
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        server.xds_status = self.config_dump

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="ads-client")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                if await self._session():
                    attempt = 0
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("ADS stream to %s: %s %s", self.target, exc.code(), exc.details())
            except Exception:
                log.exception("ADS stream to %s failed", self.target)
            self.connected = False
            # Full jitter: a fleet of proxies does not reconnect in lockstep after an outage.
            ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
            attempt += 1
            await asyncio.sleep(self._rng.uniform(0, ceiling))

    async def _session(self) -> bool:
        """One stream; returns whether it got any response (which resets the backoff)."""
        queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            while True:
                yield await queue.get()

        got_response = False
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(requests())
            for request in self.state.initial_requests():
                queue.put_nowait(request)
            async for response in call:
                got_response = True
                self.connected = True
                self.responses += 1
                changed, replies = self.state.on_response(response)
                if changed:
                    await self._apply()
                else:
                    log.warning(
                        "NACK %s version %s: %s",
                        types.SHORT.get(response.type_url, response.type_url),
                        response.version_info,
                        replies[0].error_detail.message,
                    )
                for reply in replies:
                    queue.put_nowait(reply)
        return got_response

    async def _apply(self) -> None:
        config = self.server.config
        clusters = {**self.state.desired_clusters(), **config.clusters}
        await self.server.update_clusters(clusters)
        listeners = [*config.listeners, *self.state.desired_listeners()]
        await self.server.update_listeners(listeners)

    def config_dump(self) -> list[dict[str, Any]]:
        dumps: list[dict[str, Any]] = []
        kinds = (
            (types.CLUSTER, "ClustersConfigDump", "dynamic_active_clusters", "cluster"),
            (types.LISTENER, "ListenersConfigDump", "dynamic_listeners", "listener"),
            (types.ROUTE, "RoutesConfigDump", "dynamic_route_configs", "route_config"),
            (types.ENDPOINT, "EndpointsConfigDump", "dynamic_endpoint_configs", "endpoint_config"),
        )
        for type_url, dump_type, key, field in kinds:
            state = self.state.types[type_url]
            entry: dict[str, Any] = {
                "@type": f"type.googleapis.com/envoy.admin.v3.{dump_type}",
                "version_info": state.version,
                key: [
                    {"name": name, "version_info": version, field: body}
                    for name, (version, body) in sorted(state.resources.items())
                ],
            }
            dumps.append(entry)
        dumps.append(
            {
                "@type": "type.googleapis.com/remora.xds.AdsClientStatus",
                "control_plane": self.target,
                "connected": self.connected,
                "types": self.state.status(),
            }
        )
        return dumps
