"""A cluster at run time: its hosts, round-robin choice, DNS refresh, pools and stats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

from remora.proxy.addresses import address_string
from remora.proxy.stats import Counter, Gauge, Histogram, Store
from remora.proxy.stats.group import by_response_class, resolve_group
from remora.proxy.upstream.balancer import build_balancer
from remora.proxy.upstream.config import ClusterConfig, DiscoveryType
from remora.proxy.upstream.lb import Balancer, WeightedRoundRobin
from remora.proxy.upstream.pool import HostPool

log = logging.getLogger("remora.upstream")


class Host:
    """One upstream address; also carries the per-host counters `/clusters` shows."""

    __slots__ = (
        "address",
        "cx_active",
        "cx_connect_fail",
        "cx_total",
        "healthy",
        "hostname",
        "pool",
        "port",
        "rq_active",
        "rq_error",
        "rq_success",
        "rq_timeout",
        "rq_total",
        "weight",
    )

    def __init__(
        self, cluster: Cluster, address: str, port: int, weight: int, hostname: str
    ) -> None:
        self.address = address
        self.port = port
        self.weight = weight
        self.hostname = hostname
        self.healthy = True
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

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    def __str__(self) -> str:
        return address_string(self.address, self.port)


@dataclass(slots=True)
class ClusterStats:
    upstream_cx_total: Counter
    upstream_cx_active: Gauge
    upstream_cx_connect_fail: Counter
    upstream_cx_connect_timeout: Counter
    upstream_cx_overflow: Counter
    upstream_cx_rx_bytes_total: Counter
    upstream_cx_tx_bytes_total: Counter
    upstream_rq_total: Counter
    upstream_rq_active: Gauge
    upstream_rq_pending_active: Gauge
    upstream_rq_pending_overflow: Counter
    upstream_rq_timeout: Counter
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
        self.hosts: list[Host] = []
        self._balancer: Balancer[Host] = WeightedRoundRobin([], [])
        # Whether a pick reads the request's hash key: route hash policies run only then.
        self.hashing = config.lb.policy.hashing
        self._localities: list[tuple[int, int]] = []  # per host: (locality, locality weight)
        self.open_connections = 0
        self.pending_requests = 0
        self.retries_active = 0  # for the max_retries breaker and the retry budget
        self._dns_task: asyncio.Task[None] | None = None
        if config.discovery is not DiscoveryType.STRICT_DNS:
            self._set_hosts(
                [(e.host, e.port, e.weight, e.hostname) for e in config.endpoints],
                [(e.locality, e.locality_weight) for e in config.endpoints],
            )

    async def start(self) -> None:
        if self.config.discovery is DiscoveryType.STRICT_DNS:
            await self._resolve_once()
            self._dns_task = asyncio.create_task(self._dns_loop(), name=f"dns:{self.name}")

    def pick(self, hash_key: int | None = None) -> Host | None:
        """A host by the cluster's lb_policy (`balancer.py`); `hash_key` from the route's
        hash_policy, read only by RING_HASH and MAGLEV."""
        return self._balancer.pick(hash_key)

    def set_endpoints(self, config: ClusterConfig) -> None:
        """EDS: a new ClusterLoadAssignment. Hosts that stay keep their pools and counters;
        removed ones finish their requests in flight and close."""
        self.config = config
        self.hashing = config.lb.policy.hashing
        self._set_hosts(
            [(e.host, e.port, e.weight, e.hostname) for e in config.endpoints],
            [(e.locality, e.locality_weight) for e in config.endpoints],
        )

    def wake_one_waiter(self) -> None:
        for host in self.hosts:
            if host.pool.wake_waiter():
                return

    async def retire(self) -> None:
        """Replaced or removed by a config update: requests in flight finish undisturbed."""
        await self._stop_dns()
        for host in self.hosts:
            host.pool.retire()

    async def close(self) -> None:
        await self._stop_dns()
        for host in self.hosts:
            host.pool.close()

    async def _stop_dns(self) -> None:
        if self._dns_task is not None:
            self._dns_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dns_task
            self._dns_task = None

    def _set_hosts(
        self,
        entries: list[tuple[str, int, int, str]],
        localities: list[tuple[int, int]] | None = None,
    ) -> None:
        existing = {h.key: h for h in self.hosts}
        hosts: list[Host] = []
        for address, port, weight, hostname in entries:
            host = existing.pop((address, port), None)
            if host is None:
                host = Host(self, address, port, weight, hostname)
            host.weight = weight
            hosts.append(host)
        for gone in existing.values():
            gone.pool.retire()
        self.hosts = hosts
        self._balancer = build_balancer(
            self.config.lb, hosts, localities, self.config.locality_weighted
        )
        self.stats.membership_total.set(len(hosts))
        self.stats.membership_healthy.set(sum(1 for h in hosts if h.healthy))

    async def _resolve_once(self) -> None:
        entries: list[tuple[str, int, int, str]] = []
        localities: list[tuple[int, int]] = []
        for endpoint in self.config.endpoints:
            addresses = await self._resolve(endpoint.host, endpoint.port)
            entries.extend((a, endpoint.port, endpoint.weight, endpoint.host) for a in addresses)
            localities.extend((endpoint.locality, endpoint.locality_weight) for _ in addresses)
        if entries or not self.hosts:
            self._set_hosts(entries, localities)

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
