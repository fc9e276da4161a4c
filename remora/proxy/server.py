"""The proxy process at run time: listeners, clusters, admin, and the lifecycle that ties them.

`ProxyServer` turns a compiled `ProxyConfig` into sockets and objects, serves until asked to stop,
and drains on SIGTERM: stop accepting, let in-flight requests finish up to the drain timeout, exit.
It is also the `AdminContext` the admin endpoints read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remora import __version__
from remora.config.compile import ProxyConfig
from remora.proxy.accesslog import AccessLogger
from remora.proxy.admin import AdminServer
from remora.proxy.admin.context import (
    CertificateStatus,
    CircuitBreakerThresholds,
    ClusterStatus,
    HostStatus,
    ListenerStatus,
)
from remora.proxy.certificates import certificate_statuses
from remora.proxy.hot_restart.protocol import VERSION as HOT_RESTART_VERSION
from remora.proxy.http.config import HcmConfig
from remora.proxy.http.hcm_stats import HcmStats
from remora.proxy.http.listener import HttpListener, rbac_stats_for
from remora.proxy.listener_config import FilterChainConfig, ListenerConfig
from remora.proxy.listener_runtime import ChainRuntime, InspectorStats, ListenerRuntime
from remora.proxy.listener_stats import ListenerStats
from remora.proxy.rbac.filter import RbacConfig, RbacStats
from remora.proxy.stats import Store
from remora.proxy.tcp.config import TcpProxyConfig
from remora.proxy.tcp.proxy import TcpListener, TcpStats
from remora.proxy.tls import secrets as tls_secrets
from remora.proxy.tls.config import TlsContext
from remora.proxy.tls.rotation import CertificateWatcher
from remora.proxy.tls.secret_updates import rebuild_dependents
from remora.proxy.tls.secrets import SecretView
from remora.proxy.tls.stats import TlsStats
from remora.proxy.upstream.cluster import Cluster
from remora.proxy.upstream.config import ClusterConfig, DiscoveryType
from remora.proxy.upstream.health_flags import flag_names

log = logging.getLogger("remora.server")

_STATS_FLUSH_INTERVAL = 5.0


@dataclass(slots=True)
class RunningListener:
    name: str
    runtime: ListenerRuntime
    server: asyncio.Server
    host: str
    port: int
    config: ListenerConfig


class ProxyServer:
    def __init__(
        self, config: ProxyConfig, drain_timeout: float | None = None, reuse_port: bool = False
    ) -> None:
        self.config = config
        # Workers (`--concurrency`) each bind every listener with SO_REUSEPORT on one port.
        self.reuse_port = reuse_port
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
        self.tls_watcher: CertificateWatcher | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Held while the listener and cluster sets change (`apply`): an xDS update and a reload
        # each compute the whole set from what they know, so they must not interleave.
        self.update_lock = asyncio.Lock()
        # Set by the ADS client: extra /config_dump entries (versions, last NACK reason).
        self.xds_status: Callable[[], list[dict[str, Any]]] | None = None
        # Secrets delivered over ADS (the client's store), and who else holds compiled TLS
        # contexts that must follow a swap (the ADS client's accepted resources).
        self.ads_secrets: Mapping[str, Any] = {}
        self.bootstrap_secrets: Mapping[str, Any] = config.static_secrets
        self.tls_swap_hooks: list[Callable[[TlsContext, TlsContext], None]] = []
        # Contexts held but not (or not yet) running, which must follow a secret too.
        self.tls_context_sources: list[Callable[[], Iterable[TlsContext]]] = []
        self.secret_swaps = 0  # contexts rebuilt because a secret they use changed
        # A hot restart's child takes the parent's listening sockets through this (host, port ->
        # the socket, or None to bind it); `first_started_at` is when epoch 0 started.
        self.inherit: Callable[[str, int], socket.socket | None] | None = None
        self.first_started_at = self.started_at
        # Set for a hot restart's parent: keep-alive connections are first told to close on
        # their next response, and only after this long are the idle ones closed. Closing an
        # idle keep-alive connection at once races with the request its client is sending.
        self.idle_grace = 0.0
        self._server_state = self.store.gauge("server.state")
        self._live = self.store.gauge("server.live")
        self.store.gauge("server.uptime")

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        wasm = sys.modules.get("remora.proxy.wasm.plugin")
        if wasm is not None:
            # Wasm filters compiled before the loop ran may have asked for ticks: start them.
            wasm.SERVICES.bind_store(self.store)
        # Together: each may wait for its first round of health checks.
        await asyncio.gather(*(cluster.start() for cluster in self.clusters.values()))
        try:
            for listener in self.config.listeners:
                self.listeners.append(await self._start_listener(listener))
            if self.config.admin is not None:
                self.admin = AdminServer(
                    AdminView(self), self.config.admin.host, self.config.admin.port
                )
                inherited = self._inherit(self.config.admin.host, self.config.admin.port)
                try:
                    await self.admin.start(inherited)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"admin cannot bind {self.config.admin}: {_reason(exc)}"
                    ) from None
                log.info(
                    "admin on %s:%s%s",
                    self.config.admin.host, self.admin.port,
                    " (inherited)" if inherited is not None else "",
                )  # fmt: skip
        except BaseException:
            await self.close()
            raise
        self._flush_task = asyncio.create_task(self._flush_stats(), name="stats-flush")
        self.tls_watcher = CertificateWatcher(self._tls_contexts, self._swap_tls, self.update_lock)
        self.tls_watcher.start()
        self.state = "LIVE"
        self._server_state.set(0)
        self._live.set(1)

    async def _start_listener(self, listener: ListenerConfig) -> RunningListener:
        listener_stats = ListenerStats(self.store, listener.stat_prefix)
        chains = [self._chain_runtime(listener, chain, listener_stats) for chain in listener.chains]
        default = None
        if listener.default_chain is not None:
            default = self._chain_runtime(listener, listener.default_chain, listener_stats)
        runtime = ListenerRuntime(
            listener, chains, default, listener_stats, self._inspector_stats(listener)
        )
        address = listener.address
        loop = asyncio.get_running_loop()
        inherited = self._inherit(address.host, address.port)
        try:
            if inherited is not None:
                server = await loop.create_server(
                    runtime.new_protocol, sock=inherited, backlog=listener.backlog
                )
            else:
                server = await loop.create_server(
                    runtime.new_protocol,
                    address.host,
                    address.port,
                    family=socket.AF_INET6 if ":" in address.host else socket.AF_INET,
                    backlog=listener.backlog,
                    reuse_address=True,
                    reuse_port=self.reuse_port or None,
                )
        except OSError as exc:
            raise OSError(
                exc.errno, f"listener {listener.name!r} cannot bind {address}: {_reason(exc)}"
            ) from None
        bound = server.sockets[0].getsockname()
        log.info(
            "listener %s on %s:%s%s",
            listener.name, bound[0], bound[1], " (inherited)" if inherited is not None else "",
        )  # fmt: skip
        return RunningListener(
            listener.name, runtime, server, str(bound[0]), int(bound[1]), listener
        )

    def _chain_runtime(
        self, listener: ListenerConfig, chain: FilterChainConfig, listener_stats: ListenerStats
    ) -> ChainRuntime:
        shared = (
            self.clusters,
            self.store,
            listener_stats,
            listener.buffer_limit,
            chain.tls,
            self._tls_stats(listener, chain),
            listener.name,
        )
        network_filter = chain.network_filter
        runtime: ChainRuntime = (
            HttpListener(network_filter, *shared)
            if isinstance(network_filter, HcmConfig)
            else TcpListener(network_filter, *shared)
        )
        runtime.network_rbac = self._network_rbac(chain)
        return runtime

    def _network_rbac(self, chain: FilterChainConfig) -> tuple[RbacConfig, RbacStats] | None:
        if chain.rbac is None:
            return None
        config, scope = chain.rbac
        return config, RbacStats(self.store, scope, config)

    def _tls_stats(self, listener: ListenerConfig, chain: FilterChainConfig) -> TlsStats | None:
        if chain.tls is None:
            return None
        return TlsStats(self.store, f"listener.{listener.stat_prefix}.ssl")

    def _inspector_stats(self, listener: ListenerConfig) -> InspectorStats | None:
        return None if listener.inspector is None else InspectorStats(self.store)

    def _inherit(self, host: str, port: int) -> socket.socket | None:
        return self.inherit(host, port) if self.inherit is not None else None

    # -- hot restart -------------------------------------------------------------------------
    def listening_fd(self, host: str, port: int) -> int | None:
        """The descriptor of the socket listening on host:port as configured (a listener or
        the admin), for a hot restart's child; matched by address, as Envoy does."""
        for running in self.listeners:
            if running.config.address.host == host and running.port == port:
                return int(running.server.sockets[0].fileno())
        admin, running_admin = self.config.admin, self.admin
        if admin is None or running_admin is None or admin.host != host:
            return None
        return running_admin.listening_fd() if running_admin.port == port else None

    async def stop_accepting(self) -> int:
        """Close this process's listening sockets (a successor holds them now); returns the
        connections still open. The admin closes too, so /stats answers from the successor."""
        self.state = "DRAINING"
        self._server_state.set(1)
        self._live.set(0)
        for running in self.listeners:
            running.server.close()
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        return sum(len(r.runtime.connections) for r in self.listeners)

    def begin_hot_restart_drain(self, timeout: float) -> None:
        self.drain_timeout = timeout
        self.idle_grace = min(1.0, timeout)
        self.request_shutdown("hot restart")

    # -- dynamic updates (xDS, reloads) ----------------------------------------------------
    async def apply_static(self, config: ProxyConfig) -> None:
        """Serve a reloaded bootstrap's listeners and clusters (a proxy without ADS)."""
        async with self.update_lock:
            await self.apply(config.clusters, config.listeners)
            self.config = config
            self.bootstrap_secrets = config.static_secrets

    async def apply(
        self, clusters: Mapping[str, ClusterConfig], listeners: Sequence[ListenerConfig]
    ) -> None:
        """Make `clusters` and `listeners` the running sets, all or nothing; hold `update_lock`.

        Clusters arrive before the listeners that route to them and leave only after the
        listeners that routed to them, so no new request finds its cluster missing midway. When a
        listener cannot bind, the clusters go back to what they were and the OSError propagates."""
        assert self.update_lock.locked(), "apply() runs under update_lock"
        before = {name: cluster.config for name, cluster in self.clusters.items()}
        await self.update_clusters({**before, **clusters})
        try:
            await self.update_listeners(listeners)
        except OSError:
            await self.update_clusters(before)
            raise
        await self.update_clusters(clusters)
        if self.tls_watcher is not None:
            self.tls_watcher.refresh()

    async def update_clusters(self, configs: Mapping[str, ClusterConfig]) -> None:
        """Make `configs` the cluster set. Requests in flight keep the cluster they started
        with; a removed or replaced cluster stops handing out connections and closes the
        ones it has as they become idle."""
        retired: list[Cluster] = []
        for name in list(self.clusters):
            if name not in configs:
                retired.append(self.clusters.pop(name))
        for name, config in configs.items():
            current = self.clusters.get(name)
            if current is not None and current.config == config:
                continue
            if current is not None and _only_endpoints_differ(current.config, config):
                current.set_endpoints(config)  # EDS update: keep the cluster and its pools
                continue
            cluster = Cluster(config, self.store)
            await cluster.start()
            self.clusters[name] = cluster  # the listeners share this dict: new requests see it
            if current is not None:
                retired.append(current)
        for cluster in retired:
            await cluster.retire()

    async def update_listeners(self, configs: Sequence[ListenerConfig]) -> None:
        """Make `configs` the listener set without dropping connections.

        A listener whose address is unchanged keeps its socket: new connections get the new
        config, existing ones finish on the config they were accepted with. So does one renamed
        on the same address. Others are started, or stop accepting and
        drain.

        All or nothing: new sockets are bound before anything changes, so a bind failure (an
        address another process holds) raises OSError with every listener as it was."""
        wanted = {listener.name: listener for listener in configs}
        current = {running.name: running for running in self.listeners}
        successor = _successors(current, wanted)  # running name -> the wanted name it becomes
        # A listener leaving an address that a new one takes (a change of kind) must let go of
        # it first; that one step cannot be undone if a later bind fails.
        leaving = [r for name, r in current.items() if name not in successor]
        taking_over = set(successor.values())
        arriving = {wanted[name].address for name in wanted if name not in taking_over}
        for running in leaving:
            if running.config.address in arriving and running.config.address.port != 0:
                running.server.close()
        started: list[RunningListener] = []
        try:
            for name, listener in wanted.items():
                if name not in taking_over:
                    started.append(await self._start_listener(listener))
        except OSError:
            for running in started:
                running.server.close()
            raise
        kept: list[RunningListener] = []
        for running in self.listeners:
            if running.name not in successor:
                self._retire_listener(running)
                continue
            new = wanted[successor[running.name]]
            if new.name != running.name:
                log.info("listener %s is now %s, on the same socket", running.name, new.name)
                running.name = new.name
            if new != running.config:
                self._reconfigure(running, new)
            kept.append(running)
        self.listeners = kept + started

    def _reconfigure(self, running: RunningListener, new: ListenerConfig) -> None:
        """New connections take the new chains; open ones finish on the config they were
        accepted with. A chain that keeps its name (or, unnamed, its place) and its kind keeps
        its runtime, updated in place; the others start afresh and the old ones drain."""
        runtime = running.runtime
        old = running.config
        reusable: dict[tuple[str, int], ChainRuntime] = {}
        for index, (config, chain) in enumerate(zip(old.chains, runtime.chains, strict=True)):
            reusable[(config.name, index if not config.name else -1)] = chain
        chains: list[ChainRuntime] = []
        for index, config in enumerate(new.chains):
            found = reusable.pop((config.name, index if not config.name else -1), None)
            chains.append(self._update_chain(found, new, config, runtime.listener_stats))
        default = None
        if new.default_chain is not None:
            default = self._update_chain(
                runtime.default_chain, new, new.default_chain, runtime.listener_stats
            )
        runtime.reconfigure(new, chains, default, self._inspector_stats(new))
        running.config = new
        self._close_loggers_later(old.access_logs, new.access_logs)

    def _update_chain(
        self,
        found: ChainRuntime | None,
        listener: ListenerConfig,
        chain: FilterChainConfig,
        listener_stats: ListenerStats,
    ) -> ChainRuntime:
        network_filter = chain.network_filter
        if isinstance(found, HttpListener) and isinstance(network_filter, HcmConfig):
            if network_filter.stat_prefix != found.hcm.stat_prefix:
                found.stats = HcmStats.create(self.store, network_filter.stat_prefix)
            found.hcm = network_filter
            found.rbac_stats = rbac_stats_for(self.store, network_filter)
            found.scheme = "http" if chain.tls is None else "https"
        elif isinstance(found, TcpListener) and isinstance(network_filter, TcpProxyConfig):
            if network_filter.stat_prefix != found.config.stat_prefix:
                found.stats = TcpStats(self.store, network_filter.stat_prefix)
            found.config = network_filter
        else:
            return self._chain_runtime(listener, chain, listener_stats)
        found.buffer_limit = listener.buffer_limit
        # New connections handshake with the new context (a rotated certificate, say); open
        # ones keep the one they were accepted with.
        found.tls_stats = self._tls_stats(listener, chain)
        found.tls = chain.tls
        found.name = listener.name
        found.network_rbac = self._network_rbac(chain)
        return found

    def _retire_listener(self, running: RunningListener) -> None:
        running.server.close()
        running.runtime.drain()
        self._close_loggers_later(running.config.access_logs, ())
        timeout = self._drain_timeout()

        async def finish() -> None:
            deadline = time.monotonic() + timeout
            while running.runtime.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            running.runtime.close_all()

        task = asyncio.create_task(finish(), name=f"retire:{running.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _close_loggers_later(
        self, old: Sequence[AccessLogger], new: Sequence[AccessLogger]
    ) -> None:
        """Loggers of a replaced config may still serve in-flight requests for a while."""
        stale = [logger for logger in old if logger not in new]
        if stale:
            loop = asyncio.get_running_loop()
            for logger in stale:
                loop.call_later(self._drain_timeout() + 1.0, logger.close)

    def _drain_timeout(self) -> float:
        if self.drain_timeout is not None:
            return self.drain_timeout
        return max(
            (hcm.drain_timeout for r in self.listeners for hcm in r.config.hcms),
            default=5.0,
        )

    async def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT or /quitquitquit, then drain and close."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown, sig.name)
        try:
            await self._stopped.wait()
            await self.drain()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.close()

    @property
    def shutdown_requested(self) -> bool:
        return self._stopped.is_set()

    def request_shutdown(self, reason: str = "shutdown requested") -> None:
        """Begin the clean exit; `reason` (the signal, or /quitquitquit) goes to the log."""
        if not self._stopped.is_set():
            log.info("%s: shutting down", reason)
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
            if self.idle_grace > 0:
                running.runtime.mark_draining()  # responses say `Connection: close` from now
            else:
                running.runtime.drain()
        timeout = self._drain_timeout()
        started = time.monotonic()
        deadline = started + timeout
        open_at_start = sum(len(r.runtime.connections) for r in self.listeners)
        if open_at_start:
            log.info(
                "draining: listeners closed, %d connection%s open, waiting up to %.1f s",
                open_at_start, "" if open_at_start == 1 else "s", timeout,
            )  # fmt: skip
        if self.idle_grace > 0:
            grace_end = min(deadline, started + self.idle_grace)
            while time.monotonic() < grace_end and self._any_open():
                await asyncio.sleep(0.05)
            for running in self.listeners:
                running.runtime.drain()
        while time.monotonic() < deadline and self._any_open():
            await asyncio.sleep(0.05)
        cut = sum(len(r.runtime.connections) for r in self.listeners)
        for running in self.listeners:
            running.runtime.close_all()
        finished = open_at_start - cut
        log.info(
            "drained in %.2f s: %d connection%s finished, %d closed at the drain timeout",
            time.monotonic() - started, finished, "" if finished == 1 else "s", cut,
        )  # fmt: skip

    def _any_open(self) -> bool:
        return any(r.runtime.connections for r in self.listeners)

    async def _flush_stats(self) -> None:
        """Envoy's stats_flush_interval (5 s): closes the interval that histogram quantiles show."""
        while True:
            await asyncio.sleep(_STATS_FLUSH_INTERVAL)
            self.store.flush()

    def _tls_contexts(self) -> list[TlsContext]:
        found = [
            chain.tls
            for running in self.listeners
            for chain in running.config.all_chains
            if chain.tls is not None
        ]
        found += [c.config.tls for c in self.clusters.values() if c.config.tls is not None]
        for source in self.tls_context_sources:
            found += source()
        return found

    def secret_view(self) -> SecretView:
        """The secrets TLS contexts may name now: the bootstrap's and the identity agent's
        static ones, and those the ADS stream delivered."""
        return SecretView(
            static={**self.bootstrap_secrets, **tls_secrets.local()}, ads=self.ads_secrets
        )

    async def update_secrets(
        self,
        *,
        ads: Mapping[str, Any] | None = None,
        local: Mapping[str, Any] | None = None,
        bootstrap: Mapping[str, Any] | None = None,
    ) -> int:
        """Take new ADS, identity-agent or (a reload's) bootstrap secrets: every context built
        on a changed one is rebuilt off the loop and swapped for new connections (open ones keep
        theirs). Raises ConfigErrors, changing nothing, if any cannot take the new value. Call
        it holding `update_lock`. Returns how many contexts were swapped."""
        old = self.secret_view()
        new = SecretView(
            static={
                **(self.bootstrap_secrets if bootstrap is None else bootstrap),
                **(tls_secrets.local() if local is None else local),
            },
            ads=self.ads_secrets if ads is None else ads,
        )
        changed = tls_secrets.changed_refs(old, new)
        pairs = []
        if changed:
            pairs = await asyncio.to_thread(rebuild_dependents, self._tls_contexts(), changed, new)
        if local is not None:
            tls_secrets.set_local(local)
        if ads is not None:
            self.ads_secrets = dict(ads)
        if bootstrap is not None:
            self.bootstrap_secrets = bootstrap
        for before, after in pairs:
            self._swap_tls(before, after)
        if pairs:
            self.secret_swaps += len(pairs)
            names = sorted(name for _kind, name in changed)
            log.info(
                "secret %s updated: %d TLS context(s) use it for new connections",
                ", ".join(names), len(pairs),
            )  # fmt: skip
        return len(pairs)

    def _swap_tls(self, old: TlsContext, new: TlsContext) -> None:
        """`new` (the same config, its files or secrets read again) replaces `old` for new
        connections."""
        for hook in self.tls_swap_hooks:
            hook(old, new)
        for running in self.listeners:
            for runtime in running.runtime.all_chains:
                if runtime.tls is old:
                    runtime.tls = new
            swapped = running.config.with_tls_swapped(old, new)
            if swapped is not running.config:
                running.config = swapped
                running.runtime.config = swapped
        for cluster in self.clusters.values():
            if cluster.config.tls is old:
                cluster.config = dataclasses.replace(cluster.config, tls=new)

    async def close(self) -> None:
        if self.tls_watcher is not None:
            await self.tls_watcher.close()
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
            self._flush_task = None
        loggers = self._access_loggers()
        for task in list(self._background):
            task.cancel()
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
        for logger in loggers:
            logger.close()

    def _access_loggers(self) -> list[AccessLogger]:
        loggers: list[AccessLogger] = []
        for running in self.listeners:
            loggers.extend(running.config.access_logs)
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
        self.server.request_shutdown("/quitquitquit")

    @property
    def stats(self) -> Store:
        self.server.store.gauge("server.uptime").set(int(time.time() - self.server.started_at))
        return self.server.store

    def server_info(self) -> dict[str, Any]:
        return {
            "version": f"remora/{__version__}",
            "state": self.server.state,
            "hot_restart_version": f"remora.{HOT_RESTART_VERSION}",
            "uptime_current_epoch": f"{int(time.time() - self.server.started_at)}s",
            "uptime_all_epochs": f"{int(time.time() - self.server.first_started_at)}s",
            "command_line_options": {"argv": sys.argv[1:]},
            "node": {"id": self.server.config.node_id, "cluster": self.server.config.node_cluster},
            "pid": os.getpid(),
        }

    def config_dump(self) -> dict[str, Any]:
        configs: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": tls_secrets.redacted(self.server.config.source),
            }
        ]
        if self.server.xds_status is not None:
            configs.extend(self.server.xds_status())
        return {"configs": configs}

    def clusters(self) -> Sequence[ClusterStatus]:
        return [
            ClusterStatus(
                name=cluster.name,
                hosts=tuple(
                    HostStatus(
                        address=host.address,
                        port=host.port,
                        healthy=host.available,
                        health_flags=flag_names(host.health_flags),
                        priority=host.priority,
                        success_rate=host.outlier.success_rate if host.outlier else -1.0,
                        local_origin_success_rate=(
                            host.outlier.local_success_rate if host.outlier else -1.0
                        ),
                        cx_active=host.cx_active,
                        cx_total=host.cx_total,
                        rq_active=host.rq_active,
                        rq_total=host.rq_total,
                        rq_error=host.rq_error,
                        rq_success=host.rq_success,
                        rq_timeout=host.rq_timeout,
                        cx_connect_fail=host.cx_connect_fail,
                        weight=host.weight,
                    )
                    for host in cluster.hosts
                ),
                circuit_breakers=(
                    CircuitBreakerThresholds(
                        priority="default",
                        max_connections=cluster.config.max_connections,
                        max_pending_requests=cluster.config.max_pending_requests,
                        max_requests=cluster.config.max_requests,
                        max_retries=cluster.config.max_retries,
                    ),
                ),
            )
            for cluster in self.server.clusters.values()
        ]

    def listeners(self) -> Sequence[ListenerStatus]:
        return [
            ListenerStatus(name=r.name, address=r.host, port=r.port) for r in self.server.listeners
        ]

    def certificates(self) -> Sequence[CertificateStatus]:
        return certificate_statuses(
            [running.config for running in self.server.listeners],
            {name: cluster.config for name, cluster in self.server.clusters.items()},
        )

    def is_ready(self) -> bool:
        return self.server.state == "LIVE" and not self.server.healthcheck_failed

    def set_healthcheck_failed(self, failed: bool) -> None:
        self.server.healthcheck_failed = failed


def _only_endpoints_differ(old: ClusterConfig, new: ClusterConfig) -> bool:
    return (
        old.discovery is DiscoveryType.EDS
        and dataclasses.replace(
            old, endpoints=new.endpoints, overprovisioning_factor=new.overprovisioning_factor
        )
        == new
    )


def _successors(
    current: Mapping[str, RunningListener], wanted: Mapping[str, ListenerConfig]
) -> dict[str, str]:
    """Which running listeners keep their socket, and under which name."""
    successor = {
        name: name
        for name, running in current.items()
        if name in wanted and _same_socket(running.config, wanted[name])
    }
    vacated = {
        running.config.address: name
        for name, running in current.items()
        if name not in wanted and running.config.address.port != 0
    }
    for name, listener in wanted.items():
        if name in current:
            continue
        old = vacated.pop(listener.address, None)
        if old is not None and _same_socket(current[old].config, listener):
            successor[old] = name
    return successor


def _same_socket(old: ListenerConfig, new: ListenerConfig) -> bool:
    """Whether a listener update can keep its socket: its chains, whatever they are, can change
    under it (`_reconfigure`)."""
    return old.address == new.address


def _reason(exc: OSError) -> str:
    """The kernel's words (`Address already in use`), not asyncio's restatement of the address."""
    return os.strerror(exc.errno) if exc.errno else str(exc)
