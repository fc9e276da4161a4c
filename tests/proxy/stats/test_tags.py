from __future__ import annotations

import pytest

from remora.proxy.stats.tags import extract_tags


@pytest.mark.parametrize(
    ("name", "extracted", "tags"),
    [
        ("cluster.demo.upstream_rq_total", "cluster.upstream_rq_total",
         {"envoy_cluster_name": "demo"}),
        ("cluster.demo.upstream_rq_2xx", "cluster.upstream_rq_xx",
         {"envoy_cluster_name": "demo", "envoy_response_code_class": "2"}),
        ("http.ingress_http.downstream_rq_5xx", "http.downstream_rq_xx",
         {"envoy_http_conn_manager_prefix": "ingress_http", "envoy_response_code_class": "5"}),
        ("http.ingress_http.downstream_rq_total", "http.downstream_rq_total",
         {"envoy_http_conn_manager_prefix": "ingress_http"}),
        ("listener.127.0.0.1_10000.downstream_cx_total", "listener.downstream_cx_total",
         {"envoy_listener_address": "127.0.0.1_10000"}),
        ("listener.[__1]_8080.downstream_cx_active", "listener.downstream_cx_active",
         {"envoy_listener_address": "[__1]_8080"}),
        ("listener.0.0.0.0_80.http.ingress.downstream_rq_2xx", "listener.http.downstream_rq_xx",
         {"envoy_listener_address": "0.0.0.0_80", "envoy_http_conn_manager_prefix": "ingress",
          "envoy_response_code_class": "2"}),
        ("tcp.egress.downstream_cx_tx_bytes_total", "tcp.downstream_cx_tx_bytes_total",
         {"envoy_tcp_prefix": "egress"}),
        # Not tagged by Envoy's defaults either: names of non-address listeners, plain names.
        ("listener.admin.downstream_cx_total", "listener.admin.downstream_cx_total", {}),
        ("server.uptime", "server.uptime", {}),
        # The per-code rule is deliberately absent (see the tags module docstring).
        ("cluster.demo.upstream_rq_200", "cluster.upstream_rq_200", {"envoy_cluster_name": "demo"}),
    ],
)  # fmt: skip
def test_envoy_default_tag_extraction(name: str, extracted: str, tags: dict[str, str]) -> None:
    result = extract_tags(name)
    assert result.name == extracted
    assert dict(result.tags) == tags
