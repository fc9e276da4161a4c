"""A cluster at run time: its hosts and their health, load balancing, DNS refresh, pools, stats."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import socket
import time
from dataclasses import dataclass, field

from remora.proxy.addresses import address_string
from remora.proxy.http.h2_stats import Http2Stats
from remora.proxy.stats import Counter, Gauge, Histogram, Store
from remora.proxy.stats.group import by_response_class, resolve_group
from remora.proxy.tls.stats import TlsStats
from remora.proxy.upstream.balancer import build_balancer
from remora.proxy.upstream.config import (
    PROTOCOL_HTTP1,
    ClusterConfig,
    DiscoveryType,
    EndpointConfig,
)
from remora.proxy.upstream.h2_pool import H2HostPool
from remora.proxy.upstream.health_checker import HealthChecker
from remora.proxy.upstream.health_flags import FAILED_EDS_HEALTH, UNAVAILABLE
from remora.proxy.upstream.lb import Balancer, WeightedRoundRobin
from remora.proxy.upstream.outlier import HostOutlier, OutlierDetector, OutlierStats
from remora.proxy.upstream.pool import HostPool

log = logging.getLogger("remora.upstream")
# auto_sni pools kept per host before the unused ones are dropped.
_MAX_SNI_POOLS = 256


class Host:
    """One upstream address; also carries the per-host counters `/clusters` shows."""

    __slots__ = (
        "address",
        "alpn_h2",
        "cx_active",
        "cx_connect_fail",
        "cx_total",
        "h2_pools",
        "health_flags",
        "hostname",
        "locality",
        "locality_weight",
        "outlier",
        "pool",
        "port",
        "priority",
        "rq_active",
        "rq_error",
        "rq_success",
        "rq_timeout",
        "rq_total",
        "sni_pools",
        "weight",
    )

    def __init__(self, cluster: Cluster, address: str, port: int, endpoint: EndpointConfig) -> None:
        self.address = address
        self.port = port
        self.weight = endpoint.weight
        self.hostname = endpoint.hostname
        self.locality = endpoint.locality
        self.locality_weight = endpoint.locality_weight
        self.priority = endpoint.priority
        self.health_flags = FAILED_EDS_HEALTH if endpoint.eds_unhealthy else 0
        # Outlier detection's counters for this host; None when the cluster has none, so the
        # data path's report is one attribute test.
        self.outlier: HostOutlier | None = None
        self.cx_active = 0
        self.cx_total = 0
        self.rq_active = 0
        self.rq_total = 0
        # Envoy's per-host outcome counters: a response under 500 is a success; a 5xx, or a
        # request the router gave up on before a response (connect failure, reset, timeout),
        # an error; rq_timeout counts route timeouts.
        self.rq_success = 0
        self.rq_error = 0
        self.rq_timeout = 0
        self.cx_connect_fail = 0
        self.pool = HostPool(cluster, self)
        # auto_sni: a pool per server name, beside `pool` (for requests without one).
        self.sni_pools: dict[str, HostPool] = {}
        # HTTP/2 clusters: made on first use, one per server name ("" without auto_sni).
        self.h2_pools: dict[str, H2HostPool] = {}
        # auto_config: whether its ALPN chose h2 (None: not connected yet, so try h2 first).
        self.alpn_h2: bool | None = None

    def h2_pool_for(self, server_name: str) -> H2HostPool:
        pool = self.h2_pools.get(server_name)
        if pool is None:
            if len(self.h2_pools) >= _MAX_SNI_POOLS:
                for name, unused in list(self.h2_pools.items()):
                    if not unused.connections and not unused.has_waiters:
                        del self.h2_pools[name]
            pool = H2HostPool(self.pool.cluster, self, server_name or None)
            self.h2_pools[server_name] = pool
        return pool

    def pool_for(self, server_name: str) -> HostPool:
        pool = self.sni_pools.get(server_name)
        if pool is None:
            if len(self.sni_pools) >= _MAX_SNI_POOLS:
                # Names come from requests: pools with nothing open or waiting go first, so a
                # client cycling through hosts cannot grow this without bound.
                for name, unused in list(self.sni_pools.items()):
                    if not unused.connections and not unused.has_waiters:
                        del self.sni_pools[name]
            pool = self.sni_pools[server_name] = HostPool(self.pool.cluster, self, server_name)
        return pool

    @property
    def pools(self) -> list[HostPool]:
        return [self.pool, *self.sni_pools.values()] if self.sni_pools else [self.pool]

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def available(self) -> bool:
        """Whether balancing may choose it (no health source has failed it)."""
        return not self.health_flags & UNAVAILABLE

    def update(self, endpoint: EndpointConfig) -> None:
        """The endpoint's config again (EDS or DNS refresh); the host keeps its counters."""
        self.weight = endpoint.weight
        self.hostname = endpoint.hostname
        self.locality = endpoint.locality
        self.locality_weight = endpoint.locality_weight
        self.priority = endpoint.priority
        if endpoint.eds_unhealthy:
            self.health_flags |= FAILED_EDS_HEALTH
        else:
            self.health_flags &= ~FAILED_EDS_HEALTH

    def __str__(self) -> str:
        return address_string(self.address, self.port)


@dataclass(slots=True)
class ClusterStats:
    upstream_cx_total: Counter
    upstream_cx_active: Gauge
    upstream_cx_connect_fail: Counter
    upstream_cx_connect_timeout: Counter
    upstream_cx_overflow: Counter
    upstream_cx_idle_timeout: Counter
    upstream_cx_max_duration_reached: Counter
    upstream_cx_max_requests: Counter
    upstream_cx_close_notify: Counter
    upstream_cx_http1_total: Counter
    upstream_cx_http2_total: Counter
    upstream_cx_rx_bytes_total: Counter
    upstream_cx_tx_bytes_total: Counter
    upstream_rq_total: Counter
    upstream_rq_active: Gauge
    upstream_rq_pending_active: Gauge
    upstream_rq_pending_overflow: Counter
    upstream_rq_timeout: Counter
    upstream_rq_max_duration_reached: Counter
    upstream_rq_per_try_timeout: Counter
    upstream_rq_retry: Counter
    upstream_rq_retry_success: Counter
    upstream_rq_retry_overflow: Counter
    upstream_rq_retry_backoff_exponential: Counter
    upstream_rq_retry_limit_exceeded: Counter
    upstream_rq_completed: Counter
    upstream_rq_1xx: Counter
    upstream_rq_2xx: Counter
    upstream_rq_3xx: Counter
    upstream_rq_4xx: Counter
    upstream_rq_5xx: Counter
    upstream_rq_time: Histogram
    membership_total: Gauge
    membership_healthy: Gauge
    lb_healthy_panic: Counter

    by_class: tuple[Counter, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.by_class = by_response_class(self, "upstream_rq")

    @classmethod
    def create(cls, store: Store, cluster: str) -> ClusterStats:
        return resolve_group(cls, store, f"cluster.{cluster}.")

    def response_class(self, status: int) -> Counter:
        return self.by_class[min(max(status // 100, 1), 5) - 1]


class Cluster:
    def __init__(self, config: ClusterConfig, store: Store) -> None:
        self.config = config
        self.name = config.name
        self.stats = ClusterStats.create(store, config.name)
        self.where = f"cluster {config.name}"  # how TLS log lines name it
        self.tls_stats = (
            None if config.tls is None else TlsStats(store, f"cluster.{config.name}.ssl")
        )
        # The HTTP/2 codec's counters for this cluster's connections (Envoy's names).
        self.http2_stats = (
            None
            if config.upstream_protocol == PROTOCOL_HTTP1
            else Http2Stats.create(store, f"cluster.{config.name}.")
        )
        self.hosts: list[Host] = []
        self._balancer: Balancer[Host] = WeightedRoundRobin([], [])
        # Whether a pick reads the request's hash key: route hash policies run only then.
        self.hashing = config.lb.policy.hashing
        self.open_connections = 0
        self.pending_requests = 0
        self.retries_active = 0  # for the max_retries breaker and the retry budget
        self._dns_task: asyncio.Task[None] | None = None
        self.health_checker = (
            HealthChecker(self, config.health_check, store) if config.health_check else None
        )
        self._rebalance_pending = False
        self.outlier_detector: OutlierDetector | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        if config.outlier_detection is not None:
            self.outlier_detector = OutlierDetector(
                config.outlier_detection,
                OutlierStats.create(store, config.name),
                config.name,
                self.health_changed,
                time.monotonic,
                random.random,
            )
        if config.discovery is not DiscoveryType.STRICT_DNS:
            self._set_hosts([(e.host, e.port, e) for e in config.endpoints])

    async def start(self) -> None:
        if self.config.discovery is DiscoveryType.STRICT_DNS:
            await self._resolve_once()
            self._dns_task = asyncio.create_task(self._dns_loop(), name=f"dns:{self.name}")
        if self.health_checker is not None:
            await self.health_checker.start()
        if self.outlier_detector is not None:
            self._sweep_task = asyncio.create_task(
                self._sweep_loop(self.outlier_detector), name=f"outlier:{self.name}"
            )

    def pick(self, hash_key: int | None = None) -> Host | None:
        """A host by the cluster's lb_policy (`balancer.py`); `hash_key` from the route's
        hash_policy, read only by RING_HASH and MAGLEV."""
        return self._balancer.pick(hash_key)

    def set_endpoints(self, config: ClusterConfig) -> None:
        """EDS: a new ClusterLoadAssignment. Hosts that stay keep their pools and counters;
        removed ones finish their requests in flight and close."""
        self.config = config
        self.hashing = config.lb.policy.hashing
        self._set_hosts([(e.host, e.port, e) for e in config.endpoints])

    def health_changed(self) -> None:
        """A host's health flags changed: rebalance over the hosts now available.

        On a running loop the rebuild waits for the current callback to end, so hosts that
        change together (a sweep, a round of checks) cost one rebuild, and an ejection decided
        on the data path does not build a Maglev table in the middle of a response."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._rebalance()
            return
        if not self._rebalance_pending:
            self._rebalance_pending = True
            loop.call_soon(self._rebalance)

    def wake_one_waiter(self) -> None:
        for host in self.hosts:
            for pool in host.pools:
                if pool.wake_waiter():
                    return
            for h2_pool in host.h2_pools.values():
                if h2_pool.wake_waiter():
                    return

    async def retire(self) -> None:
        """Replaced or removed by a config update: requests in flight finish undisturbed."""
        await self._stop_tasks()
        for host in self.hosts:
            for pool in host.pools:
                pool.retire()
            for h2_pool in host.h2_pools.values():
                h2_pool.retire()

    async def close(self) -> None:
        await self._stop_tasks()
        for host in self.hosts:
            for pool in host.pools:
                pool.close()
            for h2_pool in host.h2_pools.values():
                h2_pool.close()

    async def _stop_tasks(self) -> None:
        """Stop the background tasks: DNS refresh, health checks, the outlier sweep."""
        if self.health_checker is not None:
            await self.health_checker.stop()
        for task in (self._dns_task, self._sweep_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._dns_task = self._sweep_task = None

    async def _sweep_loop(self, detector: OutlierDetector) -> None:
        while True:
            await asyncio.sleep(detector.config.interval)
            try:
                detector.sweep()
            except Exception:  # one bad sweep must not end outlier detection for good
                log.exception("cluster %s: outlier detection sweep", self.name)

    def _set_hosts(self, entries: list[tuple[str, int, EndpointConfig]]) -> None:
        """`entries`: (address, port, the endpoint it came from) — a STRICT_DNS endpoint gives
        one entry per address its name resolves to."""
        existing = {h.key: h for h in self.hosts}
        hosts: list[Host] = []
        for address, port, endpoint in entries:
            host = existing.pop((address, port), None)
            if host is None:
                host = Host(self, address, port, endpoint)
            else:
                host.update(endpoint)
            hosts.append(host)
        for gone in existing.values():
            for pool in gone.pools:
                pool.retire()
            for h2_pool in gone.h2_pools.values():
                h2_pool.retire()
        self.hosts = hosts
        if self.health_checker is not None:
            self.health_checker.sync(hosts)
        if self.outlier_detector is not None:
            self.outlier_detector.sync(hosts)
        self._rebalance()

    def _rebalance(self) -> None:
        self._rebalance_pending = False
        hosts = self.hosts
        self._balancer = build_balancer(
            self.config.lb,
            hosts,
            self.config.locality_weighted,
            self.config.overprovisioning_factor,
            self.stats.lb_healthy_panic,
        )
        self.stats.membership_total.set(len(hosts))
        self.stats.membership_healthy.set(sum(1 for h in hosts if h.available))

    async def _resolve_once(self) -> None:
        entries: list[tuple[str, int, EndpointConfig]] = []
        for endpoint in self.config.endpoints:
            addresses = await self._resolve(endpoint.host, endpoint.port)
            named = dataclasses.replace(endpoint, hostname=endpoint.host)
            entries.extend((a, endpoint.port, named) for a in addresses)
        if entries or not self.hosts:
            self._set_hosts(entries)

    async def _resolve(self, name: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        for family in self.config.dns_families:
            try:
                infos = await loop.getaddrinfo(name, port, family=family, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.debug("cluster %s: lookup of %s (family %s): %s", self.name, name, family, exc)
                continue
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if addresses:
                return addresses
        log.warning("cluster %s: DNS lookup of %s found no address", self.name, name)
        return []

    async def _dns_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.dns_refresh_rate)
            await self._resolve_once()
