"""Keep-alive connection pools: one per upstream host, limits enforced per cluster.

Envoy's circuit-breaker thresholds (`max_connections`, `max_pending_requests`) apply to the whole
cluster, so the pool asks its cluster before opening a connection or queueing a waiter.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from remora.proxy.tls.layer import TlsHandshakeError, open_connection
from remora.proxy.upstream.h1_connection import UpstreamConnection

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Cluster, Host


class PoolOverflow(Exception):
    """The cluster's max_pending_requests circuit breaker is open (Envoy flag UO)."""


class ConnectFailure(Exception):
    """The upstream could not be connected (Envoy flag UF); `timed_out` tells a timeout apart."""

    def __init__(self, message: str, timed_out: bool = False, transport_failure: str = "") -> None:
        super().__init__(message)
        self.timed_out = timed_out
        # Why the transport socket failed (a TLS handshake), for Envoy's
        # `transport failure reason` in the local reply.
        self.transport_failure = transport_failure


class HostPool:
    __slots__ = (
        "_idle",
        "_idle_timer",
        "_waiters",
        "buffer_limit",
        "cluster",
        "connections",
        "host",
        "retired",
        "server_name",
        "verify_name",
    )

    def __init__(self, cluster: Cluster, host: Host, server_name: str | None = None) -> None:
        self.cluster = cluster
        self.host = host
        # auto_sni: this pool's connections carry this SNI (one pool per name, as Envoy keys
        # its pools by it); with auto_san_validation the certificate must name it too.
        self.server_name = server_name
        self.verify_name = server_name if cluster.config.auto_san_validation else None
        self.buffer_limit = cluster.config.buffer_limit
        self._idle: list[UpstreamConnection] = []
        self._waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self.connections: set[UpstreamConnection] = set()
        self.retired = False
        # One timer for the pool's idle_timeout, set for its longest-idle connection: the
        # idle list is a stack, so that one is at the bottom.
        self._idle_timer: asyncio.TimerHandle | None = None

    def take_idle(self) -> UpstreamConnection | None:
        """The hot path: reuse an idle keep-alive connection without awaiting anything."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def has_waiters(self) -> bool:
        return bool(self._waiters)

    async def acquire(self) -> UpstreamConnection:
        conn = self.take_idle()
        if conn is not None:
            return conn
        cluster = self.cluster
        if cluster.open_connections < cluster.config.max_connections:
            return await self._connect()
        cluster.stats.upstream_cx_overflow.inc()
        if cluster.pending_requests >= cluster.config.max_pending_requests:
            cluster.stats.upstream_rq_pending_overflow.inc()
            raise PoolOverflow("max_pending_requests reached")
        waiter: asyncio.Future[UpstreamConnection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        cluster.pending_requests += 1
        cluster.stats.upstream_rq_pending_active.inc()
        try:
            conn = await waiter
        except asyncio.CancelledError:
            # The request left (e.g. its client hung up) just as it was handed a connection or
            # a free slot: pass either on, or the connection would stay busy forever.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
                else:
                    cluster.wake_one_waiter()
            raise
        finally:
            cluster.pending_requests -= 1
            cluster.stats.upstream_rq_pending_active.dec()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return conn if conn is not None else await self._connect()

    async def _connect(self) -> UpstreamConnection:
        cluster = self.cluster
        stats = cluster.stats
        loop = asyncio.get_running_loop()
        cluster.open_connections += 1
        stats.upstream_cx_total.inc()
        stats.upstream_cx_http1_total.inc()
        stats.upstream_cx_active.inc()
        conn = UpstreamConnection(self)
        self.connections.add(conn)
        try:
            async with asyncio.timeout(cluster.config.connect_timeout):
                await open_connection(
                    conn,
                    self.host.address,
                    self.host.port,
                    cluster.config.tls,
                    cluster.tls_stats,
                    cluster.where,
                    self.server_name,
                    self.verify_name,
                )
        except TimeoutError:
            stats.upstream_cx_connect_timeout.inc()
            stats.upstream_cx_connect_fail.inc()
            self.host.cx_connect_fail += 1
            self._forget(conn)
            conn.abort()
            raise ConnectFailure("connection timeout", timed_out=True) from None
        except OSError as exc:
            stats.upstream_cx_connect_fail.inc()
            self.host.cx_connect_fail += 1
            self._forget(conn)
            transport_failure = str(exc) if isinstance(exc, TlsHandshakeError) else ""
            raise ConnectFailure(
                f"connection failure: {exc.strerror or exc}", transport_failure=transport_failure
            ) from None
        except asyncio.CancelledError:
            # The request left while connecting: the slot and the half-open socket go with it.
            self._forget(conn)
            conn.abort()
            raise
        self.host.cx_total += 1
        self.host.cx_active += 1
        duration = cluster.config.max_connection_duration
        if duration is not None:
            conn.expiry = loop.call_later(duration, self._expire, conn)
        return conn

    def adopt(self, transport: asyncio.Transport) -> UpstreamConnection:
        """A connection made for HTTP/2 whose ALPN chose HTTP/1.1 (auto_config, h2_pool):
        counted as this pool's from now on, and handed to the exchange that opened it."""
        cluster = self.cluster
        cluster.open_connections += 1
        cluster.stats.upstream_cx_active.inc()
        cluster.stats.upstream_cx_http1_total.inc()
        conn = UpstreamConnection(self)
        self.connections.add(conn)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        self.host.cx_total += 1
        self.host.cx_active += 1
        duration = cluster.config.max_connection_duration
        if duration is not None:
            conn.expiry = asyncio.get_running_loop().call_later(duration, self._expire, conn)
        return conn

    def _expire(self, conn: UpstreamConnection) -> None:
        """max_connection_duration: an idle connection closes now, a busy one after its
        exchange (Envoy drains it the same way)."""
        conn.expiry = None
        if conn.closed:
            return
        self.cluster.stats.upstream_cx_max_duration_reached.inc()
        conn.expired = True
        if conn in self._idle:
            self._idle.remove(conn)
            conn.close()

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange; reuse it when both sides allow."""
        limit = self.cluster.config.max_requests_per_connection
        if (
            self.retired
            or conn.closed
            or not conn.keep_alive
            or conn.upgraded
            or conn.expired
            or (limit is not None and conn.requests >= limit)
        ):
            if limit is not None and conn.requests >= limit:
                self.cluster.stats.upstream_cx_max_requests.inc()
            conn.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)
        idle_timeout = self.cluster.config.idle_timeout
        if idle_timeout is not None:
            conn.idle_since = time.monotonic()
            if self._idle_timer is None:
                self._arm_idle_timer(idle_timeout)

    def _arm_idle_timer(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        due = self._idle[0].idle_since + timeout - time.monotonic()
        self._idle_timer = loop.call_at(loop.time() + max(0.0, due), self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        timeout = self.cluster.config.idle_timeout
        if timeout is None:
            return
        now = time.monotonic()
        expired = [conn for conn in self._idle if now - conn.idle_since >= timeout]
        for conn in expired:
            self._idle.remove(conn)
            self.cluster.stats.upstream_cx_idle_timeout.inc()
            conn.close()
        if self._idle:
            self._arm_idle_timer(timeout)

    def on_connection_closed(self, conn: UpstreamConnection) -> None:
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None
        if conn not in self.connections:
            return
        self._forget(conn)
        self.host.cx_active -= 1
        if conn in self._idle:
            self._idle.remove(conn)
        # A slot opened: let one waiter (of any host in the cluster) connect.
        self.cluster.wake_one_waiter()

    def wake_waiter(self) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def _forget(self, conn: UpstreamConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.cluster.open_connections -= 1
            self.cluster.stats.upstream_cx_active.dec()

    def retire(self) -> None:
        """Stop reuse: idle connections close now, busy ones when their exchange ends."""
        self.retired = True
        self._stop_idle_timer()
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def close(self) -> None:
        self._stop_idle_timer()
        for conn in list(self.connections):
            conn.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectFailure("cluster removed"))
