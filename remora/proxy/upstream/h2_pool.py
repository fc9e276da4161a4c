"""A host's HTTP/2 connections: streams are multiplexed, connections opened only as needed.

An exchange takes a stream on the first connection with room (`take_ready`, no await). With none,
it waits for a connection already coming up that will have room for it, opens one (within the
cluster's max_connections), or queues as a pending request (max_pending_requests, Envoy's UO
past it) until a stream ends or a connection frees a slot. A burst of requests to a cold host
thus opens one connection, not one per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from remora.proxy.tls.layer import TlsHandshakeError, open_connection
from remora.proxy.upstream.h1_connection import UpstreamConnection
from remora.proxy.upstream.h2_upstream import (
    STREAMS_BEFORE_SETTINGS,
    AlpnChoseHttp1,
    H2UpstreamConnection,
)
from remora.proxy.upstream.pool import ConnectFailure, PoolOverflow

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Cluster, Host


class UseHttp1(Exception):
    """auto_config: the host chose HTTP/1.1 by ALPN. `connection`: the socket that found out,
    now the HTTP/1.1 pool's, for the exchange that opened it (the others connect afresh)."""

    def __init__(self, connection: UpstreamConnection | None) -> None:
        super().__init__("the upstream chose HTTP/1.1 by ALPN")
        self.connection = connection


class H2HostPool:
    __slots__ = (
        "_waiters",
        "buffer_limit",
        "cluster",
        "connections",
        "host",
        "peer_limit",
        "removed",
        "retired",
        "server_name",
        "verify_name",
    )

    def __init__(self, cluster: Cluster, host: Host, server_name: str | None = None) -> None:
        self.cluster = cluster
        self.host = host
        self.server_name = server_name  # auto_sni, as HostPool
        self.verify_name = server_name if cluster.config.auto_san_validation else None
        self.buffer_limit = cluster.config.buffer_limit
        self.connections: list[H2UpstreamConnection] = []  # oldest first; some still connecting
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.retired = False  # replaced: connections close once their streams are done
        self.removed = False  # the cluster is gone: nothing more connects
        # The host's SETTINGS_MAX_CONCURRENT_STREAMS as last seen: how many waiters a
        # connection still coming up is expected to take.
        self.peer_limit: int | None = None

    @property
    def has_waiters(self) -> bool:
        return bool(self._waiters)

    def take_ready(self) -> H2UpstreamConnection | None:
        """The hot path: an open connection with room for one more stream."""
        for conn in self.connections:
            if conn.capacity() > 0:
                return conn
        return None

    async def acquire(self) -> H2UpstreamConnection:
        """A connection with room for a stream, the moment there is one; the caller opens its
        stream before awaiting anything else, so the room cannot be taken meanwhile."""
        cluster = self.cluster
        while True:
            conn = self.take_ready()
            if conn is not None:
                return conn
            if self.removed:
                raise ConnectFailure("cluster removed")
            coming = self._coming_up_with_room()
            if coming is not None:
                coming.reserved += 1
                try:
                    failure = await asyncio.shield(coming.ready)
                finally:
                    coming.reserved -= 1
                if isinstance(failure, AlpnChoseHttp1):
                    raise UseHttp1(None)
                if failure is not None:
                    raise _connect_failure(failure)
                continue
            if cluster.open_connections < cluster.config.max_connections:
                return await self._connect()
            await self._wait_as_pending()

    def _coming_up_with_room(self) -> H2UpstreamConnection | None:
        peer = STREAMS_BEFORE_SETTINGS if self.peer_limit is None else self.peer_limit
        expected = min(peer, self.cluster.config.http2.max_concurrent_streams)
        limit = self.cluster.config.max_requests_per_connection
        if limit is not None:
            expected = min(expected, limit)
        for conn in self.connections:
            if not conn.ready.done() and conn.reserved < expected - 1:
                return conn  # (the one who opened it has the first stream)
        return None

    async def _wait_as_pending(self) -> None:
        cluster = self.cluster
        cluster.stats.upstream_cx_overflow.inc()
        if cluster.pending_requests >= cluster.config.max_pending_requests:
            cluster.stats.upstream_rq_pending_overflow.inc()
            raise PoolOverflow("max_pending_requests reached")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        cluster.pending_requests += 1
        cluster.stats.upstream_rq_pending_active.inc()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.wake_waiter()  # it was woken for room it will not use: pass that on
            raise
        finally:
            cluster.pending_requests -= 1
            cluster.stats.upstream_rq_pending_active.dec()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _connect(self) -> H2UpstreamConnection:
        cluster = self.cluster
        stats = cluster.stats
        config = cluster.config
        cluster.open_connections += 1
        stats.upstream_cx_total.inc()
        stats.upstream_cx_active.inc()
        conn = H2UpstreamConnection(self)
        self.connections.append(conn)
        try:
            async with asyncio.timeout(config.connect_timeout):
                await open_connection(
                    conn,
                    self.host.address,
                    self.host.port,
                    config.tls,
                    cluster.tls_stats,
                    cluster.where,
                    self.server_name,
                    self.verify_name,
                )
                # Shielded: others waiting on this connection read the same future.
                failure = await asyncio.shield(conn.ready)
            if failure is not None and not isinstance(failure, AlpnChoseHttp1):
                raise ConnectionError(f"no HTTP/2 from upstream: {failure}")
        except TimeoutError:
            stats.upstream_cx_connect_timeout.inc()
            self._connect_failed(conn, ConnectFailure("connection timeout", timed_out=True))
        except OSError as exc:
            transport_failure = str(exc) if isinstance(exc, TlsHandshakeError) else ""
            self._connect_failed(
                conn,
                ConnectFailure(
                    f"connection failure: {exc.strerror or exc}",
                    transport_failure=transport_failure,
                ),
            )
        except asyncio.CancelledError:
            # The request left while connecting: others waiting on this connection may still
            # want it, but nobody owns the half-open socket now, so it goes.
            self._forget(conn)
            conn.abort()
            if not conn.ready.done():
                conn.ready.set_result(ConnectFailure("connection failure: cancelled"))
            raise
        if isinstance(failure, AlpnChoseHttp1):
            raise UseHttp1(self._hand_to_http1(conn))
        stats.upstream_cx_http2_total.inc()
        self.host.cx_total += 1
        self.host.cx_active += 1
        duration = config.max_connection_duration
        if duration is not None:
            conn.expiry = asyncio.get_running_loop().call_later(duration, self._expire, conn)
        if self.retired:
            conn.draining = True
        self._wake_all()
        return conn

    def _hand_to_http1(self, conn: H2UpstreamConnection) -> UpstreamConnection:
        transport = conn.transport
        assert transport is not None
        self._forget(conn)
        host = self.host
        pool = host.pool_for(self.server_name) if self.server_name else host.pool
        return pool.adopt(transport)

    def _connect_failed(self, conn: H2UpstreamConnection, failure: ConnectFailure) -> None:
        self.cluster.stats.upstream_cx_connect_fail.inc()
        self.host.cx_connect_fail += 1
        self._forget(conn)
        conn.abort()
        if not conn.ready.done():
            conn.ready.set_result(failure)
        raise failure

    def _expire(self, conn: H2UpstreamConnection) -> None:
        """max_connection_duration: no new streams; it closes when its streams are done."""
        conn.expiry = None
        if not conn.closed:
            self.cluster.stats.upstream_cx_max_duration_reached.inc()
            conn.drain()
            self._wake_all()

    # -- what connections call -----------------------------------------------------------------
    def stream_freed(self, conn: H2UpstreamConnection) -> None:
        if self._waiters and conn.capacity() > 0:
            self.wake_waiter()

    def capacity_changed(self) -> None:
        """A connection's room changed other than by one stream (SETTINGS, GOAWAY)."""
        self._wake_all()

    def on_connection_closed(self, conn: H2UpstreamConnection) -> None:
        if conn not in self.connections:
            return
        self._forget(conn)
        self.host.cx_active -= 1
        # A slot opened: a waiter here may connect, or one of any host in the cluster.
        if not self.wake_waiter():
            self.cluster.wake_one_waiter()

    def _forget(self, conn: H2UpstreamConnection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
            self.cluster.open_connections -= 1
            self.cluster.stats.upstream_cx_active.dec()

    def wake_waiter(self) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def _wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def retire(self) -> None:
        """Stop new streams: each connection closes when its streams are done."""
        self.retired = True
        for conn in list(self.connections):
            conn.drain()
        self._wake_all()

    def close(self) -> None:
        self.retired = self.removed = True
        for conn in list(self.connections):
            conn.abort()
        self._wake_all()


def _connect_failure(failure: Exception) -> ConnectFailure:
    if isinstance(failure, ConnectFailure):
        return failure
    return ConnectFailure(f"connection failure: {failure}")
