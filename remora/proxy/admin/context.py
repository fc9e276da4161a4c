"""What the admin server needs from the proxy runtime, as a structural interface.

The admin endpoints only read state and flip a few switches, so the runtime implements this
Protocol and the admin package never imports the runtime. The status records are small frozen
values: the runtime builds them per request from its live objects, and rendering can never mutate
what the data path is using.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from remora.proxy.stats import Store
from remora.proxy.tls.peer import PeerCertificate

# Envoy's host health flag names, as /clusters prints them (`health_flags::/failed_active_hc`).
HEALTH_FLAGS = frozenset(
    {
        "failed_active_hc",
        "failed_outlier_check",
        "failed_eds_health",
        "degraded_active_hc",
        "degraded_eds_health",
        "pending_dynamic_removal",
        "pending_active_hc",
        "excluded_via_immediate_hc_fail",
        "active_hc_timeout",
    }
)

PRIORITIES = ("default", "high")


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One upstream host of a cluster and its per-host stats (Envoy's /clusters host lines).

    `health_flags` says why an unhealthy host is unhealthy, with Envoy's flag names; a host with
    `healthy=False` and no flags prints as `unhealthy` since no Envoy flag can be claimed for it.
    """

    address: str
    port: int
    healthy: bool
    cx_active: int = 0
    cx_total: int = 0
    rq_active: int = 0
    rq_total: int = 0
    rq_error: int = 0
    weight: int = 1
    cx_connect_fail: int = 0
    rq_success: int = 0
    rq_timeout: int = 0
    hostname: str = ""
    priority: int = 0
    health_flags: tuple[str, ...] = ()
    # Outlier detection's success rates from its last sweep, in percent; -1 when not computed.
    success_rate: float = -1.0
    local_origin_success_rate: float = -1.0

    def __post_init__(self) -> None:
        unknown = [flag for flag in self.health_flags if flag not in HEALTH_FLAGS]
        if unknown:
            raise ValueError(
                f"host {self.address}:{self.port}: unknown health flag(s) {unknown}; "
                f"expected some of {sorted(HEALTH_FLAGS)}"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"host {self.address}:{self.port}: port out of range")


@dataclass(frozen=True, slots=True)
class CircuitBreakerThresholds:
    """A cluster's circuit breaker limits at one routing priority (`default` or `high`)."""

    priority: str
    max_connections: int
    max_pending_requests: int
    max_requests: int
    max_retries: int

    def __post_init__(self) -> None:
        if self.priority not in PRIORITIES:
            raise ValueError(
                f"circuit breaker priority {self.priority!r} must be one of {PRIORITIES}"
            )


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """One upstream cluster: its hosts, and what Envoy prints at cluster level."""

    name: str
    hosts: Sequence[HostStatus]
    added_via_api: bool = False
    circuit_breakers: Sequence[CircuitBreakerThresholds] = ()


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    """One listener and the address it is bound to (the real port when configured with 0)."""

    name: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """One TLS context in use: who uses it (`listener x` or `cluster y`), its CA and its own."""

    owner: str
    ca_certs: Sequence[PeerCertificate]
    cert_chain: Sequence[PeerCertificate]


class AdminContext(Protocol):
    """The proxy runtime as the admin server sees it."""

    @property
    def stats(self) -> Store: ...

    def server_info(self) -> dict[str, Any]:
        """JSON-ready server information (version, state, uptime...), Envoy's /server_info."""
        ...

    def config_dump(self) -> dict[str, Any]:
        """JSON-ready dump of the active configuration, Envoy's /config_dump."""
        ...

    def clusters(self) -> Sequence[ClusterStatus]: ...

    def listeners(self) -> Sequence[ListenerStatus]: ...

    def certificates(self) -> Sequence[CertificateStatus]: ...

    def is_ready(self) -> bool:
        """True when the server state is LIVE (initialised and not failing health checks)."""
        ...

    def set_healthcheck_failed(self, failed: bool) -> None: ...

    def request_shutdown(self) -> None:
        """Begin a clean exit; called after the /quitquitquit response has been written."""
        ...
