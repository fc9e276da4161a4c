"""A cluster's run-time config: what its hosts, pools and balancer read while proxying.

Compiled with the hot path (remora/native.py): pools and the cluster read these fields per
request. The proto compiler that fills them in, `cluster_compiler.compile_cluster`, runs once per
config (and per EDS update) and stays interpreted, as all config-time code does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from remora.proxy.http.config import Http2Options
from remora.proxy.tls.config import TlsContext
from remora.proxy.upstream.health_check_config import HealthCheckConfig
from remora.proxy.upstream.lb_config import LbConfig
from remora.proxy.upstream.outlier_config import OutlierConfig


class DiscoveryType(Enum):
    STATIC = "STATIC"
    STRICT_DNS = "STRICT_DNS"
    EDS = "EDS"  # endpoints arrive over ADS (ClusterLoadAssignment); the cluster warms until then


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    host: str
    port: int
    weight: int
    hostname: str
    # Which LocalityLbEndpoints it came from, and that locality's weight (0 when unset, which
    # gives it no traffic under locality-weighted balancing, as in Envoy).
    locality: int = 0
    locality_weight: int = 0
    priority: int = 0  # LocalityLbEndpoints.priority: 0 is the highest
    # LbEndpoint.health_status from the control plane: UNHEALTHY, DRAINING or TIMEOUT take the
    # host out of balancing (Envoy's failed_eds_health).
    eds_unhealthy: bool = False


# Which HTTP version a cluster's connections speak (HttpProtocolOptions' upstream protocol).
PROTOCOL_HTTP1 = 0
PROTOCOL_HTTP2 = 1
PROTOCOL_DOWNSTREAM = 2  # the client's: HTTP/2 for HTTP/2 clients, HTTP/1.1 for the others
PROTOCOL_AUTO = 3  # TLS ALPN chooses, h2 first

# An upstream's own SETTINGS_MAX_CONCURRENT_STREAMS decides how many streams a connection
# carries unless the cluster sets fewer (Envoy's default, 2^31-1); the windows are the same
# bounded ones as downstream (see Http2Options).
UPSTREAM_HTTP2 = Http2Options(max_concurrent_streams=2**31 - 1)

# Envoy's default ClusterLoadAssignment.Policy.overprovisioning_factor, in percent.
DEFAULT_OVERPROVISIONING = 140


@dataclass(frozen=True, slots=True)
class LoadAssignment:
    """A ClusterLoadAssignment compiled: from a cluster's `load_assignment` or from EDS."""

    endpoints: tuple[EndpointConfig, ...]
    overprovisioning_factor: int = DEFAULT_OVERPROVISIONING


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    discovery: DiscoveryType
    endpoints: tuple[EndpointConfig, ...]
    connect_timeout: float
    max_connections: int
    max_pending_requests: int
    max_requests: int
    dns_refresh_rate: float
    # Address families to try in order; the first that resolves wins (Envoy's dns_lookup_family).
    dns_families: tuple[int, ...]
    buffer_limit: int
    max_requests_per_connection: int | None
    eds_service_name: str = ""  # the ClusterLoadAssignment name an EDS cluster subscribes to
    # Limits on upstream response heads (and trailer sections): Envoy's defaults.
    max_response_headers_bytes: int = 60 * 1024
    max_response_headers_count: int = 100
    # common_lb_config.locality_weighted_lb_config: pick a locality by its weight, then a host.
    locality_weighted: bool = False
    lb: LbConfig = dataclasses.field(default_factory=LbConfig)
    overprovisioning_factor: int = DEFAULT_OVERPROVISIONING
    health_check: HealthCheckConfig | None = None
    outlier_detection: OutlierConfig | None = None
    # common_http_protocol_options: an idle pooled connection closes after idle_timeout
    # (Envoy's default 1 h); a connection is not reused past max_connection_duration.
    idle_timeout: float | None = 3600.0
    max_connection_duration: float | None = None
    max_stream_duration: float | None = None  # an upstream request's whole life, each try
    # Concurrent retries: the max_retries threshold, or a retry budget (percent of active plus
    # pending requests, minimum concurrency), which overrides it as in Envoy.
    max_retries: int = 3
    retry_budget: tuple[float, int] | None = None
    tls: TlsContext | None = None  # the cluster's transport socket; None is plaintext
    # upstream_http_protocol_options: SNI from each request's host (or this header), one pool
    # per name; and the upstream certificate checked against that name instead of the SAN
    # matchers.
    auto_sni: bool = False
    auto_san_validation: bool = False
    auto_sni_header: str | None = None
    upstream_protocol: int = PROTOCOL_HTTP1
    http2: Http2Options = UPSTREAM_HTTP2
