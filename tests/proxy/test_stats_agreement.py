"""/stats, /clusters and the access log tell the same story, the one Envoy's would tell.

Envoy's router charges a cluster's response-code stats for what the upstream answered and for
the 5xx it answers itself when it gives up on the upstream (connect failure, overflow, timeout);
per host it counts `rq_success` for a response under 500, `rq_error` for a 5xx or an abandoned
request, `rq_timeout` for a route timeout and `cx_connect_fail` for a failed connect; and
`%UPSTREAM_HOST%` names the host a connection was attempted to, even when it failed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    file_access_log,
    host_stat,
    http_listener,
    read_log,
    running_proxy,
    stat_value,
    tcp_listener,
)
from tests.proxy.procs import free_port

LOG_FORMAT = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %UPSTREAM_CLUSTER%\n"


async def test_a_connect_failure_is_counted_alike_everywhere(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "access.log"
    listener = http_listener(name="ingress", access_log=file_access_log(log, LOG_FORMAT))
    async with running_proxy(bootstrap([listener], [cluster("backend", [port])])) as proxy:
        assert proxy.admin is not None
        admin = f"http://127.0.0.1:{proxy.admin.port}"
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            assert (await client.get(url)).status_code == 503
            stats = (await client.get(f"{admin}/stats")).text
            clusters = (await client.get(f"{admin}/clusters")).text
    assert stat_value(stats, "cluster.backend.upstream_cx_connect_fail") == 1
    assert stat_value(stats, "cluster.backend.upstream_rq_5xx") == 1
    assert stat_value(stats, "cluster.backend.upstream_rq_completed") == 1
    assert host_stat(clusters, "backend", port, "cx_connect_fail") == 1
    assert host_stat(clusters, "backend", port, "rq_error") == 1
    assert host_stat(clusters, "backend", port, "rq_success") == 0
    assert host_stat(clusters, "backend", port, "rq_total") == 1
    assert await read_log(log, 1) == [f"503 UF 127.0.0.1:{port} backend"]


async def test_responses_count_per_host_as_successes_and_errors() -> None:
    async with demo_upstreams(2) as ups:
        config = bootstrap(
            [http_listener(name="ingress")], [cluster("backend", [u.port for u in ups])]
        )
        async with running_proxy(config) as proxy:
            assert proxy.admin is not None
            admin = f"http://127.0.0.1:{proxy.admin.port}"
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}"
            async with httpx.AsyncClient() as client:
                for path in ("/a", "/b", "/status/503", "/status/404"):
                    await client.get(url + path)
                stats = (await client.get(f"{admin}/stats")).text
                clusters = (await client.get(f"{admin}/clusters")).text
    ports = [u.port for u in ups]
    assert sum(host_stat(clusters, "backend", p, "rq_success") for p in ports) == 3
    assert sum(host_stat(clusters, "backend", p, "rq_error") for p in ports) == 1
    assert sum(host_stat(clusters, "backend", p, "rq_total") for p in ports) == 4
    assert stat_value(stats, "cluster.backend.upstream_rq_2xx") == 2
    assert stat_value(stats, "cluster.backend.upstream_rq_4xx") == 1
    assert stat_value(stats, "cluster.backend.upstream_rq_5xx") == 1
    assert stat_value(stats, "cluster.backend.upstream_rq_completed") == 4


async def test_a_route_timeout_counts_as_a_timeout_and_an_error(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    async with demo_upstreams(1) as ups:
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "0.2s"}}]
        listener = http_listener(
            routes=routes, name="ingress", access_log=file_access_log(log, LOG_FORMAT)
        )
        async with running_proxy(
            bootstrap([listener], [cluster("backend", [ups[0].port])])
        ) as proxy:
            assert proxy.admin is not None
            admin = f"http://127.0.0.1:{proxy.admin.port}"
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/delay/1000"
            async with httpx.AsyncClient() as client:
                assert (await client.get(url)).status_code == 504
                stats = (await client.get(f"{admin}/stats")).text
                clusters = (await client.get(f"{admin}/clusters")).text
    port = ups[0].port
    assert stat_value(stats, "cluster.backend.upstream_rq_timeout") == 1
    assert stat_value(stats, "cluster.backend.upstream_rq_5xx") == 1
    assert host_stat(clusters, "backend", port, "rq_timeout") == 1
    assert host_stat(clusters, "backend", port, "rq_error") == 1
    assert host_stat(clusters, "backend", port, "rq_success") == 0
    assert await read_log(log, 1) == [f"504 UT 127.0.0.1:{port} backend"]


async def test_a_tcp_connect_failure_is_counted_per_host_too() -> None:
    port = free_port()
    config = bootstrap([tcp_listener("backend", name="tcp")], [cluster("backend", [port])])
    async with running_proxy(config) as proxy:
        assert proxy.admin is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("tcp"))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        async with httpx.AsyncClient() as client:
            admin = f"http://127.0.0.1:{proxy.admin.port}"
            stats = (await client.get(f"{admin}/stats")).text
            clusters = (await client.get(f"{admin}/clusters")).text
    assert stat_value(stats, "cluster.backend.upstream_cx_connect_fail") == 1
    assert host_stat(clusters, "backend", port, "cx_connect_fail") == 1
