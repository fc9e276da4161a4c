"""Envoy's `Cluster` and `ClusterLoadAssignment` protos -> `ClusterConfig`, `LoadAssignment`.

Config time only: the run-time types live in remora/proxy/upstream/config.py, which is compiled
with the hot path; this module stays interpreted (docs/architecture.md, "The compiled hot path").
"""

from __future__ import annotations

import re
import socket

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from remora.config import support
from remora.config.common import optional_seconds, socket_address
from remora.config.errors import ErrorCollector
from remora.proxy.tls.compiler import compile_transport_socket
from remora.proxy.upstream.config import (
    DEFAULT_OVERPROVISIONING,
    PROTOCOL_AUTO,
    ClusterConfig,
    DiscoveryType,
    EndpointConfig,
    LoadAssignment,
)
from remora.proxy.upstream.health_check_config import compile_health_checks
from remora.proxy.upstream.lb_config import compile_lb
from remora.proxy.upstream.outlier_config import compile_outlier_detection
from remora.proxy.upstream.protocol_compiler import (
    UPSTREAM_ALPN,
    compile_upstream_protocol,
)

support.register(
    "envoy.config.cluster.v3.Cluster",
    {
        "name",
        "type",
        "connect_timeout",
        "lb_policy",
        "load_assignment",
        "circuit_breakers",
        "dns_refresh_rate",
        "dns_lookup_family",
        "per_connection_buffer_limit_bytes",
        "max_requests_per_connection",
        "eds_cluster_config",
        "typed_extension_protocol_options",
        "common_lb_config",
        "transport_socket",
        "http2_protocol_options",
        "protocol_selection",
    },
)
support.register("envoy.config.cluster.v3.Cluster.CommonLbConfig", {"locality_weighted_lb_config"})
support.register("envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig", set())
_UPSTREAM_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
support.register(
    _UPSTREAM_HTTP_OPTIONS,
    {
        "common_http_protocol_options",
        "explicit_http_config",
        "use_downstream_protocol_config",
        "auto_config",
        "upstream_http_protocol_options",
    },
)
support.register(
    "envoy.config.core.v3.UpstreamHttpProtocolOptions",
    {"auto_sni", "auto_san_validation", "override_auto_sni_header"},
)
# The core message is shared with the connection manager, whose compiler refuses this field.
support.register("envoy.config.core.v3.HttpProtocolOptions", {"max_response_headers_kb"})
# Of the core HttpProtocolOptions, what a cluster implements (the rest are refused by path).
_CLUSTER_COMMON_FIELDS = frozenset(
    {
        "max_headers_count",
        "max_response_headers_kb",
        "idle_timeout",
        "max_connection_duration",
        "max_requests_per_connection",
        "max_stream_duration",
    }
)
support.register("envoy.config.cluster.v3.Cluster.EdsClusterConfig", {"eds_config", "service_name"})
support.register("envoy.config.core.v3.ConfigSource", {"ads", "resource_api_version"})
support.register("envoy.config.core.v3.AggregatedConfigSource", set())
support.register(
    "envoy.config.endpoint.v3.ClusterLoadAssignment", {"cluster_name", "endpoints", "policy"}
)
support.register(
    "envoy.config.endpoint.v3.ClusterLoadAssignment.Policy", {"overprovisioning_factor"}
)
support.register(
    "envoy.config.endpoint.v3.LocalityLbEndpoints",
    {"lb_endpoints", "load_balancing_weight", "priority"},
)
support.register_ignored(
    "envoy.config.endpoint.v3.LocalityLbEndpoints",
    "locality",
    "a locality's name is not used: its load_balancing_weight is, under "
    "common_lb_config.locality_weighted_lb_config",
)
support.register(
    "envoy.config.endpoint.v3.LbEndpoint", {"endpoint", "load_balancing_weight", "health_status"}
)
support.register("envoy.config.endpoint.v3.Endpoint", {"address", "hostname"})
support.register("envoy.config.cluster.v3.CircuitBreakers", {"thresholds"})
support.register(
    "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
    {
        "priority",
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
        "retry_budget",
    },
)
support.register(
    "envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget",
    {"budget_percent", "min_retry_concurrency"},
)
support.register("envoy.type.v3.Percent", {"value"})

_EDS_UNHEALTHY = frozenset(
    {health_check_pb2.UNHEALTHY, health_check_pb2.DRAINING, health_check_pb2.TIMEOUT}
)
_DEFAULT_CONNECT_TIMEOUT = 5.0  # Envoy's default
_DEFAULT_THRESHOLD = 1024  # Envoy's circuit-breaker defaults
_DEFAULT_MAX_RETRIES = 3
_DEFAULT_BUFFER_LIMIT = 1024 * 1024  # Envoy's per_connection_buffer_limit_bytes default


def compile_cluster(
    cluster: cluster_pb2.Cluster, path: str, errors: ErrorCollector
) -> ClusterConfig | None:
    before = len(errors.errors)
    if not cluster.name:
        errors.add(f"{path}.name", "a cluster needs a name")
    discovery_name = cluster_pb2.Cluster.DiscoveryType.Name(cluster.type)
    if discovery_name not in DiscoveryType.__members__:
        errors.add(f"{path}.type", f"not supported: {path}.type ({discovery_name})")
    lb = compile_lb(cluster, path, errors)
    health_check = compile_health_checks(cluster, path, errors)
    outlier_detection = compile_outlier_detection(cluster, path, errors)
    protocol, http2 = compile_upstream_protocol(cluster, path, errors)
    tls = None
    before_tls = len(errors.errors)
    if cluster.HasField("transport_socket"):
        tls = compile_transport_socket(
            cluster.transport_socket,
            f"{path}.transport_socket",
            errors,
            server_side=False,
            default_alpn=UPSTREAM_ALPN.get(protocol, ()),
        )
    if protocol == PROTOCOL_AUTO and tls is None and len(errors.errors) == before_tls:
        errors.add(
            f"{path}.typed_extension_protocol_options[{_UPSTREAM_HTTP_OPTIONS!r}].auto_config",
            "auto_config chooses the protocol by TLS ALPN: the cluster needs a TLS "
            "transport_socket (for plaintext HTTP/2 use explicit_http_config)",
        )
    eds_service_name = ""
    if discovery_name == "EDS":
        eds = cluster.eds_cluster_config
        if not eds.eds_config.HasField("ads"):
            errors.add(
                f"{path}.type",
                f"not supported: {path}.type (EDS needs eds_cluster_config.eds_config.ads: "
                "endpoints come over the ADS stream only)",
            )
        if cluster.HasField("load_assignment"):
            errors.add(f"{path}.load_assignment", "an EDS cluster gets its endpoints over EDS")
        eds_service_name = eds.service_name or cluster.name
    elif cluster.HasField("eds_cluster_config"):
        errors.add(f"{path}.eds_cluster_config", "only valid with type: EDS")
    assignment = compile_endpoints(
        cluster.load_assignment,
        f"{path}.load_assignment",
        errors,
        names_allowed=discovery_name == "STRICT_DNS",
    )
    max_connections = max_pending = max_requests = _DEFAULT_THRESHOLD
    max_retries = _DEFAULT_MAX_RETRIES
    retry_budget: tuple[float, int] | None = None
    for i, threshold in enumerate(cluster.circuit_breakers.thresholds):
        if threshold.priority != 0:
            errors.add(
                f"{path}.circuit_breakers.thresholds[{i}].priority",
                "not supported: only DEFAULT priority",
            )
            continue
        if threshold.HasField("max_connections"):
            max_connections = threshold.max_connections.value
        if threshold.HasField("max_pending_requests"):
            max_pending = threshold.max_pending_requests.value
        if threshold.HasField("max_requests"):
            max_requests = threshold.max_requests.value
        if threshold.HasField("max_retries"):
            max_retries = threshold.max_retries.value
        if threshold.HasField("retry_budget"):
            budget = threshold.retry_budget
            percent = budget.budget_percent.value if budget.HasField("budget_percent") else 20.0
            if not 0.0 <= percent <= 100.0:
                errors.add(
                    f"{path}.circuit_breakers.thresholds[{i}].retry_budget.budget_percent",
                    "must be between 0 and 100",
                )
            minimum = (
                budget.min_retry_concurrency.value
                if budget.HasField("min_retry_concurrency")
                else 3
            )
            retry_budget = (percent, minimum)
    families = {
        cluster_pb2.Cluster.AUTO: (socket.AF_INET6, socket.AF_INET),
        cluster_pb2.Cluster.V4_ONLY: (socket.AF_INET,),
        cluster_pb2.Cluster.V6_ONLY: (socket.AF_INET6,),
        cluster_pb2.Cluster.V4_PREFERRED: (socket.AF_INET, socket.AF_INET6),
        cluster_pb2.Cluster.ALL: (socket.AF_UNSPEC,),
    }[cluster.dns_lookup_family]
    connect_timeout = optional_seconds(cluster, "connect_timeout", _DEFAULT_CONNECT_TIMEOUT)
    common = _common_http_options(cluster, path, errors)
    upstream_options = _upstream_http_options(cluster)
    sni_header = upstream_options.override_auto_sni_header.lower() or None
    if sni_header is not None and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", sni_header):
        errors.add(
            f"{path}.typed_extension_protocol_options[{_UPSTREAM_HTTP_OPTIONS!r}]"
            ".upstream_http_protocol_options.override_auto_sni_header",
            f"not a header name: {upstream_options.override_auto_sni_header!r}",
        )
    max_kb = (
        common.max_response_headers_kb.value if common.HasField("max_response_headers_kb") else 60
    )
    if not 1 <= max_kb <= 8192:
        errors.add(
            f"{path}.typed_extension_protocol_options[{_UPSTREAM_HTTP_OPTIONS!r}]"
            ".common_http_protocol_options.max_response_headers_kb",
            "must be 1-8192",
        )
    if len(errors.errors) > before:
        return None
    return ClusterConfig(
        name=cluster.name,
        discovery=DiscoveryType(discovery_name),
        endpoints=assignment.endpoints,
        overprovisioning_factor=assignment.overprovisioning_factor,
        connect_timeout=connect_timeout or _DEFAULT_CONNECT_TIMEOUT,
        max_connections=max_connections,
        max_pending_requests=max_pending,
        max_requests=max_requests,
        dns_refresh_rate=optional_seconds(cluster, "dns_refresh_rate", 5.0) or 5.0,
        dns_families=families,
        buffer_limit=(
            cluster.per_connection_buffer_limit_bytes.value
            if cluster.HasField("per_connection_buffer_limit_bytes")
            else _DEFAULT_BUFFER_LIMIT
        ),
        max_requests_per_connection=(
            common.max_requests_per_connection.value or None
            if common.HasField("max_requests_per_connection")
            else cluster.max_requests_per_connection.value or None
            if cluster.HasField("max_requests_per_connection")
            else None
        ),
        idle_timeout=optional_seconds(common, "idle_timeout", 3600.0),
        max_connection_duration=optional_seconds(common, "max_connection_duration", None),
        max_stream_duration=optional_seconds(common, "max_stream_duration", None),
        eds_service_name=eds_service_name,
        max_response_headers_bytes=max_kb * 1024,
        max_response_headers_count=(
            common.max_headers_count.value if common.HasField("max_headers_count") else 100
        ),
        locality_weighted=cluster.common_lb_config.HasField("locality_weighted_lb_config"),
        lb=lb,
        health_check=health_check,
        outlier_detection=outlier_detection,
        max_retries=max_retries,
        retry_budget=retry_budget,
        tls=tls,
        auto_sni=upstream_options.auto_sni,
        auto_san_validation=upstream_options.auto_san_validation,
        auto_sni_header=sni_header,
        upstream_protocol=protocol,
        http2=http2,
    )


def _common_http_options(
    cluster: cluster_pb2.Cluster, path: str, errors: ErrorCollector
) -> protocol_pb2.HttpProtocolOptions:
    """The cluster's `common_http_protocol_options`, from Envoy's upstream HttpProtocolOptions
    extension (the one key of `typed_extension_protocol_options` remora implements)."""
    common = protocol_pb2.HttpProtocolOptions()
    for key, value in cluster.typed_extension_protocol_options.items():
        key_path = f"{path}.typed_extension_protocol_options[{key!r}]"
        options = http_protocol_options_pb2.HttpProtocolOptions()
        if key != _UPSTREAM_HTTP_OPTIONS or not value.Unpack(options):
            errors.add(key_path, f"not supported: {key_path} (only {_UPSTREAM_HTTP_OPTIONS})")
            continue
        for field, _ in options.common_http_protocol_options.ListFields():
            if field.name not in _CLUSTER_COMMON_FIELDS:
                field_path = f"{key_path}.common_http_protocol_options.{field.name}"
                errors.add(field_path, f"not supported: {field_path}")
        common = options.common_http_protocol_options
    return common


def _upstream_http_options(
    cluster: cluster_pb2.Cluster,
) -> protocol_pb2.UpstreamHttpProtocolOptions:
    """`upstream_http_protocol_options` of the upstream HttpProtocolOptions extension (its
    other keys are checked by `_common_http_options`)."""
    value = cluster.typed_extension_protocol_options.get(_UPSTREAM_HTTP_OPTIONS)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    if value is None or not value.Unpack(options):
        return protocol_pb2.UpstreamHttpProtocolOptions()
    return options.upstream_http_protocol_options


def compile_endpoints(
    la: endpoint_pb2.ClusterLoadAssignment,
    path: str,
    errors: ErrorCollector,
    names_allowed: bool = False,
) -> LoadAssignment:
    endpoints: list[EndpointConfig] = []
    overprovisioning = DEFAULT_OVERPROVISIONING
    if la.policy.HasField("overprovisioning_factor"):
        overprovisioning = la.policy.overprovisioning_factor.value
        if overprovisioning < 1:
            errors.add(f"{path}.policy.overprovisioning_factor", "must be at least 1")
    for i, locality in enumerate(la.endpoints):
        for j, lb_endpoint in enumerate(locality.lb_endpoints):
            ep_path = f"{path}.endpoints[{i}].lb_endpoints[{j}]"
            address = socket_address(
                lb_endpoint.endpoint.address,
                f"{ep_path}.endpoint.address",
                errors,
                ip_only=not names_allowed,
            )
            if address is None:
                continue
            weight = (
                lb_endpoint.load_balancing_weight.value
                if lb_endpoint.HasField("load_balancing_weight")
                else 1
            )
            if weight < 1:
                errors.add(f"{ep_path}.load_balancing_weight", "must be at least 1")
            if lb_endpoint.health_status == health_check_pb2.DEGRADED:
                errors.add(
                    f"{ep_path}.health_status",
                    f"not supported: {ep_path}.health_status (DEGRADED; remora has no degraded "
                    "host tier)",
                )
            locality_weight = (
                locality.load_balancing_weight.value
                if locality.HasField("load_balancing_weight")
                else 0
            )
            endpoints.append(
                EndpointConfig(
                    address.host,
                    address.port,
                    weight,
                    lb_endpoint.endpoint.hostname,
                    i,
                    locality_weight,
                    locality.priority,
                    lb_endpoint.health_status in _EDS_UNHEALTHY,
                )
            )
    return LoadAssignment(tuple(endpoints), overprovisioning)
