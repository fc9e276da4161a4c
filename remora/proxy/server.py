"""The proxy process at run time: listeners, clusters, admin, and the lifecycle that ties them.

`ProxyServer` turns a compiled `ProxyConfig` into sockets and objects, serves until asked to stop,
and drains on SIGTERM: stop accepting, let in-flight requests finish up to the drain timeout, exit.
It is also the `AdminContext` the admin endpoints read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from remora import __version__
from remora.config.compile import ProxyConfig
from remora.proxy.admin import AdminServer
from remora.proxy.admin.context import ClusterStatus, HostStatus, ListenerStatus
from remora.proxy.http.config import HcmConfig
from remora.proxy.http.listener import HttpListener
from remora.proxy.listener_stats import ListenerStats
from remora.proxy.stats import Store
from remora.proxy.tcp.proxy import TcpListener
from remora.proxy.upstream.cluster import Cluster

log = logging.getLogger("remora.server")

_STATS_FLUSH_INTERVAL = 5.0


@dataclass(slots=True)
class RunningListener:
    name: str
    runtime: HttpListener | TcpListener
    server: asyncio.Server
    host: str
    port: int


class ProxyServer:
    def __init__(self, config: ProxyConfig, drain_timeout: float | None = None) -> None:
        self.config = config
        self.store = Store()
        self.clusters: dict[str, Cluster] = {
            name: Cluster(cluster, self.store) for name, cluster in config.clusters.items()
        }
        self.listeners: list[RunningListener] = []
        self.admin: AdminServer | None = None
        self.started_at = time.time()
        self.state = "INITIALIZING"
        self.healthcheck_failed = False
        self.drain_timeout = drain_timeout
        self._stopped = asyncio.Event()
        self._flush_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._server_state = self.store.gauge("server.state")
        self._live = self.store.gauge("server.live")
        self.store.gauge("server.uptime")

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        for cluster in self.clusters.values():
            await cluster.start()
        loop = asyncio.get_running_loop()
        try:
            for listener in self.config.listeners:
                buffer_limit = listener.buffer_limit
                listener_stats = ListenerStats(self.store, listener.stat_prefix)
                runtime: HttpListener | TcpListener
                if isinstance(listener.network_filter, HcmConfig):
                    runtime = HttpListener(
                        listener.network_filter,
                        self.clusters,
                        self.store,
                        listener_stats,
                        buffer_limit,
                    )
                else:
                    runtime = TcpListener(
                        listener.network_filter,
                        self.clusters,
                        self.store,
                        listener_stats,
                        buffer_limit,
                    )
                address = listener.address
                server = await loop.create_server(
                    runtime.protocol_factory,
                    address.host,
                    address.port,
                    family=socket.AF_INET6 if ":" in address.host else socket.AF_INET,
                    backlog=listener.backlog,
                    reuse_address=True,
                )
                bound = server.sockets[0].getsockname()
                self.listeners.append(
                    RunningListener(listener.name, runtime, server, str(bound[0]), int(bound[1]))
                )
                log.info("listener %s on %s:%s", listener.name, bound[0], bound[1])
            if self.config.admin is not None:
                self.admin = AdminServer(
                    AdminView(self), self.config.admin.host, self.config.admin.port
                )
                await self.admin.start()
                log.info("admin on %s:%s", self.config.admin.host, self.admin.port)
        except BaseException:
            await self.close()
            raise
        self._flush_task = asyncio.create_task(self._flush_stats(), name="stats-flush")
        self.state = "LIVE"
        self._server_state.set(0)
        self._live.set(1)

    async def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT or /quitquitquit, then drain and close."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        try:
            await self._stopped.wait()
            await self.drain()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.close()

    def request_shutdown(self) -> None:
        self._stopped.set()

    async def drain(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.state = "DRAINING"
        self._server_state.set(1)
        self._live.set(0)
        for running in self.listeners:
            running.server.close()
            running.runtime.drain()
        timeout = self.drain_timeout
        if timeout is None:
            timeout = max(
                (
                    r.runtime.hcm.drain_timeout
                    for r in self.listeners
                    if isinstance(r.runtime, HttpListener)
                ),
                default=5.0,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(r.runtime.connections for r in self.listeners):
            await asyncio.sleep(0.05)
        for running in self.listeners:
            running.runtime.close_all()

    async def _flush_stats(self) -> None:
        """Envoy's stats_flush_interval (5 s): closes the interval that histogram quantiles show."""
        while True:
            await asyncio.sleep(_STATS_FLUSH_INTERVAL)
            self.store.flush()

    async def close(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
            self._flush_task = None
        for running in self.listeners:
            running.server.close()
            running.runtime.close_all()
        for running in self.listeners:
            await running.server.wait_closed()
        self.listeners.clear()
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        for cluster in self.clusters.values():
            await cluster.close()
        for logger in self._access_loggers():
            logger.close()

    def _access_loggers(self) -> list[Any]:
        loggers: list[Any] = []
        for listener in self.config.listeners:
            loggers.extend(listener.network_filter.access_logs)
        return loggers

    def listener_port(self, name: str) -> int:
        for running in self.listeners:
            if running.name == name:
                return running.port
        raise KeyError(name)


class AdminView:
    """The server as the admin endpoints see it (`AdminContext`): read-only views and switches."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    def request_shutdown(self) -> None:
        self.server.request_shutdown()

    @property
    def stats(self) -> Store:
        self.server.store.gauge("server.uptime").set(int(time.time() - self.server.started_at))
        return self.server.store

    def server_info(self) -> dict[str, Any]:
        return {
            "version": f"remora/{__version__}",
            "state": self.server.state,
            "hot_restart_version": "disabled",
            "uptime_current_epoch": f"{int(time.time() - self.server.started_at)}s",
            "uptime_all_epochs": f"{int(time.time() - self.server.started_at)}s",
            "command_line_options": {"argv": sys.argv[1:]},
            "node": {"id": "", "cluster": ""},
            "pid": os.getpid(),
        }

    def config_dump(self) -> dict[str, Any]:
        return {
            "configs": [
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                    "bootstrap": self.server.config.source,
                }
            ]
        }

    def clusters(self) -> Sequence[ClusterStatus]:
        return [
            ClusterStatus(
                name=cluster.name,
                hosts=tuple(
                    HostStatus(
                        address=host.address,
                        port=host.port,
                        healthy=host.healthy,
                        cx_active=host.cx_active,
                        cx_total=host.cx_total,
                        rq_active=host.rq_active,
                        rq_total=host.rq_total,
                        rq_error=host.rq_error,
                        weight=host.weight,
                    )
                    for host in cluster.hosts
                ),
            )
            for cluster in self.server.clusters.values()
        ]

    def listeners(self) -> Sequence[ListenerStatus]:
        return [
            ListenerStatus(name=r.name, address=r.host, port=r.port) for r in self.server.listeners
        ]

    def is_ready(self) -> bool:
        return self.server.state == "LIVE" and not self.server.healthcheck_failed

    def set_healthcheck_failed(self, failed: bool) -> None:
        self.server.healthcheck_failed = failed
