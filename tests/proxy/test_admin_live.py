"""The admin API of a running proxy: Envoy's paths, stat names and Prometheus output."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy


async def test_admin_reports_live_state() -> None:
    async with (
        demo_upstreams(2) as ups,
        running_proxy(
            bootstrap([http_listener(name="ingress")], [cluster("backend", [u.port for u in ups])])
        ) as proxy,
    ):
        assert proxy.admin is not None
        admin = f"http://127.0.0.1:{proxy.admin.port}"
        proxy_url = f"http://127.0.0.1:{proxy.listener_port('ingress')}"
        async with httpx.AsyncClient() as client:
            for _ in range(4):
                assert (await client.get(f"{proxy_url}/x")).status_code == 200
            assert (await client.get(f"{proxy_url}/status/503")).status_code == 503
            stats = (await client.get(f"{admin}/stats")).text
            assert "cluster.backend.upstream_rq_2xx: 4" in stats
            assert "cluster.backend.upstream_rq_5xx: 1" in stats
            assert "http.ingress.downstream_rq_total: 5" in stats
            assert "http.ingress.downstream_cx_total: 1" in stats
            assert "cluster.backend.upstream_rq_time: P0(" in stats
            prom = (await client.get(f"{admin}/stats/prometheus")).text
            families = {f.name: f for f in text_string_to_metric_families(prom)}
            samples = [
                s
                for s in families["envoy_cluster_upstream_rq_xx"].samples
                if s.labels.get("envoy_cluster_name") == "backend"
            ]
            by_class = {s.labels["envoy_response_code_class"]: s.value for s in samples}
            assert by_class["2"] == 4 and by_class["5"] == 1
            assert "envoy_http_downstream_rq_time" in families
            clusters = (await client.get(f"{admin}/clusters")).text
            for upstream in ups:
                assert f"backend::127.0.0.1:{upstream.port}::rq_total::" in clusters
            listeners = (await client.get(f"{admin}/listeners")).text
            assert f"ingress::127.0.0.1:{proxy.listener_port('ingress')}" in listeners
            dump = (await client.get(f"{admin}/config_dump")).json()
            bootstrap_dump = dump["configs"][0]["bootstrap"]
            assert bootstrap_dump["static_resources"]["clusters"][0]["name"] == "backend"
            info = (await client.get(f"{admin}/server_info")).json()
            assert info["state"] == "LIVE"
