from __future__ import annotations

import json

from remora.proxy.admin.clusters import clusters_json, clusters_text
from remora.proxy.admin.context import CircuitBreakerThresholds, ClusterStatus, HostStatus

from .support import StaticContext


def test_text_lines_match_envoy_layout() -> None:
    lines = clusters_text(StaticContext().clusters()).splitlines()
    assert lines[0] == "demo::added_via_api::false"
    host = [line for line in lines if line.startswith("demo::127.0.0.1:8080::")]
    assert host[:8] == [
        "demo::127.0.0.1:8080::cx_active::2",
        "demo::127.0.0.1:8080::cx_connect_fail::0",
        "demo::127.0.0.1:8080::cx_total::5",
        "demo::127.0.0.1:8080::rq_active::1",
        "demo::127.0.0.1:8080::rq_error::3",
        "demo::127.0.0.1:8080::rq_success::37",
        "demo::127.0.0.1:8080::rq_timeout::0",
        "demo::127.0.0.1:8080::rq_total::40",
    ]
    assert "demo::127.0.0.1:8080::health_flags::healthy" in host
    assert "demo::127.0.0.1:8080::weight::1" in host
    assert "demo::[::1]:8081::health_flags::/failed_active_hc" in lines
    assert "demo::[::1]:8081::weight::5" in lines


def test_circuit_breakers_and_unhealthy_without_reason() -> None:
    cluster = ClusterStatus(
        "c",
        [HostStatus("10.0.0.1", 1, False)],
        added_via_api=True,
        circuit_breakers=[CircuitBreakerThresholds("default", 1024, 1024, 1024, 3)],
    )
    lines = clusters_text([cluster]).splitlines()
    assert lines[:5] == [
        "c::default_priority::max_connections::1024",
        "c::default_priority::max_pending_requests::1024",
        "c::default_priority::max_requests::1024",
        "c::default_priority::max_retries::3",
        "c::added_via_api::true",
    ]
    assert "c::10.0.0.1:1::health_flags::unhealthy" in lines
    doc = json.loads(clusters_json([cluster]))
    status = doc["cluster_statuses"][0]
    assert status["circuit_breakers"]["thresholds"][0] == {
        "max_connections": 1024,
        "max_pending_requests": 1024,
        "max_requests": 1024,
        "max_retries": 3,
    }  # DEFAULT priority is the proto default, so omitted as in Envoy's docs
    assert status["host_statuses"][0]["health_status"] == {"eds_health_status": "UNHEALTHY"}


def test_json_is_envoy_admin_clusters_proto() -> None:
    doc = json.loads(clusters_json(StaticContext().clusters()))
    (status,) = doc["cluster_statuses"]
    assert status["name"] == "demo"
    assert "added_via_api" not in status  # false is the default: omitted like Envoy
    first, second = status["host_statuses"]
    assert first["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}
    stats = {s["name"]: s for s in first["stats"]}
    assert stats["rq_total"] == {"name": "rq_total", "value": "40"}  # uint64 -> string
    assert stats["cx_active"] == {"name": "cx_active", "value": "2", "type": "GAUGE"}
    assert "value" not in stats["cx_connect_fail"]  # zero is omitted
    assert first["health_status"] == {"eds_health_status": "HEALTHY"}
    assert first["weight"] == 1
    assert second["health_status"] == {
        "failed_active_health_check": True,
        "eds_health_status": "HEALTHY",
    }
