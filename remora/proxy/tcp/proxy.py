"""`envoy.filters.network.tcp_proxy` at run time: splice a client to one upstream host.

Each direction writes straight into the other socket and pauses the source when the destination's
write buffer is full, so a slow side never makes the proxy buffer without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import xxhash

from remora.proxy import response_flags as flags
from remora.proxy.accesslog import AccessLogRecord
from remora.proxy.addresses import address_string
from remora.proxy.connection_stack import stack
from remora.proxy.listener_stats import ListenerStats
from remora.proxy.rbac.filter import RbacConfig, RbacStats
from remora.proxy.stats import Store
from remora.proxy.tcp.config import TcpProxyConfig
from remora.proxy.tls.config import TlsContext
from remora.proxy.tls.facts import TlsFacts
from remora.proxy.tls.layer import open_connection
from remora.proxy.tls.stats import TlsStats

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Cluster, Host


class TcpStats:
    __slots__ = (
        "downstream_cx_no_route",
        "downstream_cx_rx_bytes_total",
        "downstream_cx_total",
        "downstream_cx_tx_bytes_total",
        "idle_timeout",
        "upstream_flush_active",
    )

    def __init__(self, store: Store, prefix: str) -> None:
        base = f"tcp.{prefix}."
        self.downstream_cx_total = store.counter(base + "downstream_cx_total")
        self.downstream_cx_no_route = store.counter(base + "downstream_cx_no_route")
        self.downstream_cx_rx_bytes_total = store.counter(base + "downstream_cx_rx_bytes_total")
        self.downstream_cx_tx_bytes_total = store.counter(base + "downstream_cx_tx_bytes_total")
        self.idle_timeout = store.counter(base + "idle_timeout")
        self.upstream_flush_active = store.gauge(base + "upstream_flush_active")


class TcpListener:
    def __init__(
        self,
        config: TcpProxyConfig,
        clusters: Mapping[str, Cluster],
        store: Store,
        listener_stats: ListenerStats,
        buffer_limit: int,
        tls: TlsContext | None = None,
        tls_stats: TlsStats | None = None,
        name: str = "",
    ) -> None:
        self.name = name
        self.config = config
        self.clusters = clusters
        self.stats = TcpStats(store, config.stat_prefix)
        self.listener_stats = listener_stats
        self.buffer_limit = buffer_limit
        self.connections: set[TcpDownstream] = set()
        self.draining = False
        self.tls = tls
        self.tls_stats = tls_stats
        # envoy.filters.network.rbac on this chain: its rules and stats (None: no filter).
        self.network_rbac: tuple[RbacConfig, RbacStats] | None = None

    def protocol_factory(self) -> asyncio.Protocol:
        app = TcpDownstream(self)
        if self.tls is None and self.network_rbac is None:
            return app
        return stack(app, self.network_rbac, self.tls, self.tls_stats, f"listener {self.name}")

    def drain(self) -> None:
        self.draining = True  # TCP streams have no request boundary; they run to the drain deadline

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.close()


class _TcpUpstream(asyncio.Protocol):
    __slots__ = (
        "owner",
        "transport",
    )

    def __init__(self, owner: TcpDownstream) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.owner.listener.buffer_limit)

    def data_received(self, data: bytes) -> None:
        self.owner.from_upstream(data)

    def eof_received(self) -> bool | None:
        self.owner.upstream_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.upstream_closed()

    def pause_writing(self) -> None:
        self.owner.pause_downstream_reading(True)

    def resume_writing(self) -> None:
        self.owner.pause_downstream_reading(False)


class TcpDownstream(asyncio.Protocol):
    __slots__ = (
        "closed",
        "cluster",
        "config",
        "connect_task",
        "downstream_eof",
        "flags",
        "half_closed",
        "host",
        "last_activity",
        "listener",
        "pending",
        "pending_bytes",
        "remote_address",
        "rx",
        "start_time",
        "started",
        "stats",
        "timer",
        "tls_facts",
        "transport",
        "tx",
        "upstream",
    )

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.config = listener.config  # kept for the connection's life, across config updates
        self.stats = listener.stats
        self.transport: asyncio.Transport | None = None
        self.upstream: _TcpUpstream | None = None
        self.cluster: Cluster | None = None
        self.host: Host | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.rx = 0
        self.tx = 0
        self.closed = False
        self.start_time = time.time()
        self.started = time.monotonic()
        self.last_activity = self.started
        self.remote_address = ""
        self.flags: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.half_closed = 0
        self.downstream_eof = False
        self.tls_facts: TlsFacts | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.listener.buffer_limit)
        if self.listener.tls is not None:
            tls = transport.get_extra_info("tls")
            self.tls_facts = tls.facts if tls is not None else None
        peer = transport.get_extra_info("peername")
        if peer:
            self.remote_address = address_string(str(peer[0]), int(peer[1]))
        self.listener.connections.add(self)
        self.stats.downstream_cx_total.inc()
        self.listener.listener_stats.on_open()
        cluster = self.listener.clusters.get(self.config.cluster)
        host = None
        if cluster is not None:
            hash_key = None
            if cluster.hashing and self.config.hash_source_ip and peer:
                hash_key = xxhash.xxh64_intdigest(str(peer[0]).encode())
            host = cluster.pick(hash_key)
        if cluster is None or host is None:
            self.stats.downstream_cx_no_route.inc()
            self.flags.append(flags.NO_HEALTHY_UPSTREAM)
            transport.close()
            return
        self.cluster, self.host = cluster, host
        transport.pause_reading()  # nothing to forward to until the upstream connects
        self.connect_task = asyncio.create_task(self._connect(cluster, host))
        self._arm_idle()

    async def _connect(self, cluster: Cluster, host: Host) -> None:
        stats = cluster.stats
        if cluster.open_connections >= cluster.config.max_connections:
            stats.upstream_cx_overflow.inc()
            self.flags.append(flags.UPSTREAM_OVERFLOW)
            self.close()
            return
        stats.upstream_cx_total.inc()
        cluster.open_connections += 1
        stats.upstream_cx_active.inc()
        upstream = _TcpUpstream(self)
        try:
            async with asyncio.timeout(cluster.config.connect_timeout):
                await open_connection(
                    upstream,
                    host.address,
                    host.port,
                    cluster.config.tls,
                    cluster.tls_stats,
                    cluster.where,
                )
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                stats.upstream_cx_connect_timeout.inc()
            stats.upstream_cx_connect_fail.inc()
            host.cx_connect_fail += 1
            cluster.open_connections -= 1
            stats.upstream_cx_active.dec()
            self.flags.append(flags.UPSTREAM_CONNECTION_FAILURE)
            self.close()
            return
        except asyncio.CancelledError:
            # The client left while connecting: give the connection slot back.
            cluster.open_connections -= 1
            stats.upstream_cx_active.dec()
            if upstream.transport is not None:
                upstream.transport.abort()
            raise
        finally:
            self.connect_task = None
        host.cx_total += 1
        host.cx_active += 1
        self.upstream = upstream
        if self.closed:
            self._close_upstream()
            return
        assert upstream.transport is not None
        for chunk in self.pending:
            upstream.transport.write(chunk)
        self.pending.clear()
        self.pending_bytes = 0
        if self.downstream_eof and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.rx += len(data)
        self.last_activity = time.monotonic()
        self.stats.downstream_cx_rx_bytes_total.inc(len(data))
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(data)
            return
        # Not connected yet (some loops start reading after connection_made regardless of a
        # pause there): hold the bytes, and stop reading once a buffer's worth is waiting.
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes > self.listener.buffer_limit and self.transport is not None:
            self.transport.pause_reading()

    def from_upstream(self, data: bytes) -> None:
        self.tx += len(data)
        self.last_activity = time.monotonic()
        self.stats.downstream_cx_tx_bytes_total.inc(len(data))
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def eof_received(self) -> bool | None:
        self.downstream_eof = True
        upstream = self.upstream
        transport = upstream.transport if upstream is not None else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
        self.half_closed += 1
        if self.half_closed >= 2:
            self.close()
        return True

    def upstream_eof(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            if not transport.can_write_eof():
                # TLS has no half-close that every peer honours (TLS 1.2 takes close_notify as
                # the end of both directions): the upstream is done, so the connection is.
                self.close()
                return
            transport.write_eof()
        self.half_closed += 1
        if self.half_closed >= 2:
            self.close()

    def pause_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()

    def pause_downstream_reading(self, pause: bool) -> None:
        if self.transport is None or self.closed:
            return
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def upstream_closed(self) -> None:
        cluster, host = self.cluster, self.host
        if cluster is not None and host is not None and self.upstream is not None:
            cluster.open_connections -= 1
            cluster.stats.upstream_cx_active.dec()
            cluster.stats.upstream_cx_rx_bytes_total.inc(self.tx)
            cluster.stats.upstream_cx_tx_bytes_total.inc(self.rx)
            host.cx_active -= 1
        self.upstream = None
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.connect_task is not None:
            self.connect_task.cancel()
        self.listener.connections.discard(self)
        self.listener.listener_stats.on_close()
        self._close_upstream()
        self._log()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._close_upstream()

    def _close_upstream(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()

    def _arm_idle(self) -> None:
        timeout = self.config.idle_timeout
        if timeout is None or self.closed:
            return
        loop = asyncio.get_running_loop()
        delay = self.last_activity + timeout - time.monotonic()
        self.timer = loop.call_later(max(delay, 0.0), self._on_idle)

    def _on_idle(self) -> None:
        self.timer = None
        timeout = self.config.idle_timeout
        if self.closed or timeout is None:
            return
        if time.monotonic() - self.last_activity >= timeout:
            self.stats.idle_timeout.inc()
            self.close()
        else:
            self._arm_idle()

    def _log(self) -> None:
        loggers = self.config.access_logs
        if not loggers:
            return
        record = AccessLogRecord(
            start_time=self.start_time,
            protocol=None,
            response_flags=",".join(self.flags) if self.flags else "-",
            duration_ms=(time.monotonic() - self.started) * 1000,
            upstream_host=str(self.host) if self.host is not None else None,
            upstream_cluster=self.cluster.name if self.cluster is not None else None,
            bytes_received=self.rx,
            bytes_sent=self.tx,
            downstream_remote_address=self.remote_address,
            tls=self.tls_facts,
        )
        for logger in loggers:
            logger.log(record)
