"""Envoy's /clusters output, in text and JSON.

Text follows Envoy's `::`-separated lines (`demo::127.0.0.1:8080::cx_active::2`), which tools
grep. JSON is produced from the real `envoy.admin.v3.Clusters` proto through
protobuf's JSON printer, so field names, enum spelling, uint64-as-string and the omission of
default values are exactly what Envoy emits for the same message.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.admin.v3 import clusters_pb2, metrics_pb2
from envoy.config.cluster.v3 import circuit_breaker_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from google.protobuf import json_format

from .addresses import address_string, socket_address
from .context import ClusterStatus, HostStatus


def _host_stats(host: HostStatus) -> tuple[dict[str, int], dict[str, int]]:
    counters = {
        "cx_connect_fail": host.cx_connect_fail,
        "cx_total": host.cx_total,
        "rq_error": host.rq_error,
        "rq_success": host.rq_success,
        "rq_timeout": host.rq_timeout,
        "rq_total": host.rq_total,
    }
    gauges = {"cx_active": host.cx_active, "rq_active": host.rq_active}
    return counters, gauges


def health_flags_text(host: HostStatus) -> str:
    if host.health_flags:
        return "".join(f"/{flag}" for flag in host.health_flags)
    return "healthy" if host.healthy else "unhealthy"


def clusters_text(clusters: Sequence[ClusterStatus]) -> str:
    lines: list[str] = []
    for cluster in clusters:
        name = cluster.name
        for cb in cluster.circuit_breakers:
            prefix = f"{name}::{cb.priority}_priority"
            lines.append(f"{prefix}::max_connections::{cb.max_connections}")
            lines.append(f"{prefix}::max_pending_requests::{cb.max_pending_requests}")
            lines.append(f"{prefix}::max_requests::{cb.max_requests}")
            lines.append(f"{prefix}::max_retries::{cb.max_retries}")
        lines.append(f"{name}::added_via_api::{str(cluster.added_via_api).lower()}")
        for host in cluster.hosts:
            prefix = f"{name}::{address_string(host.address, host.port)}"
            counters, gauges = _host_stats(host)
            for stat, value in sorted({**counters, **gauges}.items()):
                lines.append(f"{prefix}::{stat}::{value}")
            lines.append(f"{prefix}::hostname::{host.hostname}")
            lines.append(f"{prefix}::health_flags::{health_flags_text(host)}")
            lines.append(f"{prefix}::weight::{host.weight}")
            lines.append(f"{prefix}::region::")
            lines.append(f"{prefix}::zone::")
            lines.append(f"{prefix}::sub_zone::")
            lines.append(f"{prefix}::canary::false")
            lines.append(f"{prefix}::priority::{host.priority}")
            lines.append(f"{prefix}::success_rate::{_rate(host.success_rate)}")
            lines.append(
                f"{prefix}::local_origin_success_rate::{_rate(host.local_origin_success_rate)}"
            )
    return "".join(line + "\n" for line in lines)


def _rate(rate: float) -> str:
    return "-1" if rate < 0 else f"{rate:g}"


def _health_status(host: HostStatus) -> clusters_pb2.HostHealthStatus:
    flags = set(host.health_flags)
    status = clusters_pb2.HostHealthStatus(
        failed_active_health_check="failed_active_hc" in flags,
        failed_outlier_check="failed_outlier_check" in flags,
        failed_active_degraded_check="degraded_active_hc" in flags,
        pending_dynamic_removal="pending_dynamic_removal" in flags,
        pending_active_hc="pending_active_hc" in flags,
        excluded_via_immediate_hc_fail="excluded_via_immediate_hc_fail" in flags,
        active_hc_timeout="active_hc_timeout" in flags,
    )
    if "failed_eds_health" in flags or (not host.healthy and not flags):
        status.eds_health_status = health_check_pb2.UNHEALTHY
    elif "degraded_eds_health" in flags:
        status.eds_health_status = health_check_pb2.DEGRADED
    else:
        status.eds_health_status = health_check_pb2.HEALTHY
    return status


def clusters_message(clusters: Sequence[ClusterStatus]) -> clusters_pb2.Clusters:
    message = clusters_pb2.Clusters()
    for cluster in clusters:
        status = message.cluster_statuses.add(
            name=cluster.name, added_via_api=cluster.added_via_api
        )
        if cluster.circuit_breakers:
            thresholds = status.circuit_breakers.thresholds
            for cb in cluster.circuit_breakers:
                entry: circuit_breaker_pb2.CircuitBreakers.Thresholds = thresholds.add(
                    priority=base_pb2.HIGH if cb.priority == "high" else base_pb2.DEFAULT
                )
                entry.max_connections.value = cb.max_connections
                entry.max_pending_requests.value = cb.max_pending_requests
                entry.max_requests.value = cb.max_requests
                entry.max_retries.value = cb.max_retries
        for host in cluster.hosts:
            host_status = status.host_statuses.add(
                address=socket_address(host.address, host.port),
                health_status=_health_status(host),
                weight=host.weight,
                hostname=host.hostname,
                priority=host.priority,
            )
            if host.success_rate >= 0:
                host_status.success_rate.value = host.success_rate
            if host.local_origin_success_rate >= 0:
                host_status.local_origin_success_rate.value = host.local_origin_success_rate
            counters, gauges = _host_stats(host)
            for stat, value in counters.items():
                host_status.stats.add(name=stat, value=value, type=metrics_pb2.SimpleMetric.COUNTER)
            for stat, value in gauges.items():
                host_status.stats.add(name=stat, value=value, type=metrics_pb2.SimpleMetric.GAUGE)
    return message


def clusters_json(clusters: Sequence[ClusterStatus]) -> str:
    return json_format.MessageToJson(clusters_message(clusters), preserving_proto_field_name=True)
