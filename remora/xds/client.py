"""The proxy's ADS client: one gRPC stream to the control plane, applied to a `ProxyServer`.

The protocol lives in `ClientState` (SotW) or `DeltaClientState` (incremental, when the bootstrap
says `api_type: DELTA_GRPC`); this shell only moves messages and applies accepted config (clusters
first, then listeners, and only then ACKs, as Envoy does). When the control plane is unreachable
the proxy keeps serving what it has and retries with jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc
from google.protobuf import json_format

from remora.config.compile import ProxyConfig
from remora.config.errors import ConfigErrors
from remora.proxy.server import ProxyServer
from remora.xds import types
from remora.xds.client_delta import DeltaClientState
from remora.xds.client_resources import ClientResources, SavedState, TypeState
from remora.xds.client_state import ClientState

log = logging.getLogger("remora.xds.client")

USER_AGENT = "remora"


class _State(Protocol):
    """What the shell needs from either protocol variant's sans-IO state."""

    protocol: str
    types: dict[str, TypeState]
    resources: ClientResources

    def initial_requests(self) -> Sequence[Any]: ...

    def on_response(self, response: Any) -> tuple[bool, Sequence[Any]]: ...

    def save(self) -> SavedState: ...

    def reject(self, saved: SavedState, response: Any, reason: str) -> Sequence[Any]: ...

    def status(self) -> dict[str, Any]: ...


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
        lds, cds = (ads.lds, ads.cds) if ads else (True, True)
        self.state: _State
        if ads is not None and ads.delta:
            self.state = DeltaClientState(node_of(config), lds, cds)
        else:
            self.state = ClientState(node_of(config), lds, cds)
        self.state.resources = ClientResources(config.listeners, config.clusters)
        self.state.resources.static_secrets = lambda: server.secret_view().static
        server.tls_swap_hooks.append(lambda old, new: self.state.resources.swap_tls(old, new))
        server.tls_context_sources.append(lambda: self.state.resources.tls_contexts())
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
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def requests() -> AsyncIterator[Any]:
            while True:
                yield await queue.get()

        got_response = False
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            delta = self.state.protocol == "delta"
            call: Any
            if delta:
                call = stub.DeltaAggregatedResources(requests())
            else:
                call = stub.StreamAggregatedResources(requests())
            for request in self.state.initial_requests():
                queue.put_nowait(request)
            async for response in call:
                got_response = True
                self.connected = True
                self.responses += 1
                # Under the lock from compile to apply: a secret the identity agent swaps, or a
                # reload, lands wholly before or wholly after this response.
                async with self.server.update_lock:
                    replies = await self._handle(response, delta)
                for reply in replies:
                    queue.put_nowait(reply)
        return got_response

    async def _handle(self, response: Any, delta: bool) -> Sequence[Any]:
        saved = self.state.save()
        changed, replies = self.state.on_response(response)
        self._log_warnings()
        if changed:
            try:
                await self._apply_locked(self.server.config)
            except (OSError, ConfigErrors) as exc:  # nothing of it was applied
                reason = (
                    "; ".join(str(e) for e in exc.errors)
                    if isinstance(exc, ConfigErrors)
                    else str(exc)
                )
                replies = self.state.reject(saved, response, reason)
                log.error("rejected an xDS update the proxy could not apply: %s", reason)
        else:
            log.warning(
                "NACK %s version %s: %s",
                types.SHORT.get(response.type_url, response.type_url),
                response.system_version_info if delta else response.version_info,
                replies[0].error_detail.message,
            )
        return replies

    def _log_warnings(self) -> None:
        resources = self.state.resources
        for warning in resources.warnings:
            log.warning("xDS: %s", warning)
        resources.warnings.clear()

    async def _apply_locked(self, config: ProxyConfig) -> None:
        # New secrets first: contexts built on a changed one are rebuilt (ConfigErrors, and
        # nothing changes, if one cannot take it); then the clusters and listeners. If those
        # cannot be applied, the secrets go back too: a NACKed secret must not keep serving.
        previous = self.server.ads_secrets
        await self.server.update_secrets(ads=self.state.resources.secrets)
        try:
            clusters, listeners = self.state.resources.merged(config.clusters)
            self._log_warnings()
            await self.server.apply(clusters, listeners)
        except BaseException:
            try:
                await self.server.update_secrets(ads=previous)
            except ConfigErrors as exc:  # the old secrets no longer build (expired, say)
                log.error("could not restore the previous secrets: %s", exc.errors)
            raise

    async def apply_static(self, config: ProxyConfig) -> None:
        """Serve a reloaded bootstrap's listeners and clusters beside what ADS serves.

        The bootstrap's resources still win over dynamic ones of the same name; a dynamic one
        that a removed static resource shadowed is served from now on, without waiting for the
        control plane to send it again. A bind failure leaves everything as it was."""
        async with self.server.update_lock:
            resources = self.state.resources
            previous = resources.set_static(config.listeners, config.clusters)
            previous_secrets = self.server.bootstrap_secrets
            try:
                # Dynamic resources that name a bootstrap secret follow its new value.
                await self.server.update_secrets(bootstrap=config.static_secrets)
                await self._apply_locked(config)
            except (OSError, ConfigErrors):
                resources.set_static(list(previous[0].values()), previous[1])
                with contextlib.suppress(ConfigErrors):
                    await self.server.update_secrets(bootstrap=previous_secrets)
                raise
            self.server.config = config

    def config_dump(self) -> list[dict[str, Any]]:
        dumps: list[dict[str, Any]] = []
        kinds = (
            (types.CLUSTER, "ClustersConfigDump", "dynamic_active_clusters", "cluster"),
            (types.LISTENER, "ListenersConfigDump", "dynamic_listeners", "listener"),
            (types.ROUTE, "RoutesConfigDump", "dynamic_route_configs", "route_config"),
            (types.ENDPOINT, "EndpointsConfigDump", "dynamic_endpoint_configs", "endpoint_config"),
            (types.SECRET, "SecretsConfigDump", "dynamic_active_secrets", "secret"),
        )
        for type_url, dump_type, key, field in kinds:
            entry: dict[str, Any] = {
                "@type": f"type.googleapis.com/envoy.admin.v3.{dump_type}",
                "version_info": self.state.types[type_url].version,
                key: [
                    {"name": name, "version_info": version, field: body}
                    for name, (version, body) in sorted(
                        self.state.resources.dumps[type_url].items()
                    )
                ],
            }
            dumps.append(entry)
        dumps.append(
            {
                "@type": "type.googleapis.com/remora.xds.AdsClientStatus",
                "control_plane": self.target,
                "protocol": self.state.protocol,
                "connected": self.connected,
                "types": self.state.status(),
            }
        )
        return dumps
