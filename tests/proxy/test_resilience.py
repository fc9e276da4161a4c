"""The resilience scenario of a new user: five upstreams behind one cluster with health checks,
outlier detection and retries, under wrk. Mid-run one upstream is killed, one starts answering
503 and one stops answering; no client request may fail, and the ejections show in /clusters."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.proxy.harness import (
    admin_get,
    bootstrap,
    cluster,
    demo_upstreams,
    health_flags,
    http_listener,
    running_proxy,
)
from tests.proxy.scripted import read_head, scripted_upstream


def _switchable(mode: dict[str, str]) -> Any:
    """An upstream that answers 200 until `mode["now"]` says "503" or "stall"."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            if mode["now"] == "stall":
                await asyncio.sleep(3600)
            status = "503 Service Unavailable" if mode["now"] == "503" else "200 OK"
            writer.write(f"HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok".encode())
            await writer.drain()

    return script


def _config(ports: list[int]) -> dict[str, Any]:
    retry = {
        "retry_on": "5xx,connect-failure,reset",
        "num_retries": 4,
        "per_try_timeout": "0.25s",
        "retry_back_off": {"base_interval": "0.005s", "max_interval": "0.02s"},
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/"
                             "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
        }],
        "host_selection_retry_max_attempts": 5,
    }  # fmt: skip
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend", "retry_policy": retry}}]
    backend = cluster(
        "backend",
        ports,
        health_checks=[{
            "timeout": "0.5s", "interval": "1s", "no_traffic_interval": "1s",
            "unhealthy_threshold": 3, "healthy_threshold": 2,
            "http_health_check": {"path": "/healthz"},
        }],
        outlier_detection={
            "consecutive_5xx": 3, "interval": "0.5s", "base_ejection_time": "30s",
            "max_ejection_percent": 100,
        },
        common_lb_config={"healthy_panic_threshold": {"value": 25}},
        circuit_breakers={"thresholds": [{"max_retries": 1000}]},
    )  # fmt: skip
    return bootstrap([http_listener(routes=routes)], [backend])


async def test_no_request_fails_while_three_of_five_upstreams_go_bad() -> None:
    modes = [{"now": "ok"}, {"now": "ok"}]
    async with (
        demo_upstreams(3) as ups,
        scripted_upstream(_switchable(modes[0])) as erroring,
        scripted_upstream(_switchable(modes[1])) as stalling,
    ):
        ports = [ups[0].port, ups[1].port, ups[2].port, erroring.port, stalling.port]
        async with running_proxy(_config(ports)) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}/"
            wrk = await asyncio.create_subprocess_exec(
                "wrk", "-t2", "-c8", "-d4s", "--latency", url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await asyncio.sleep(0.8)
            await ups[2].close()  # killed
            modes[0]["now"] = "503"
            modes[1]["now"] = "stall"
            out, err = await wrk.communicate()
            report = out.decode()
            assert wrk.returncode == 0, err.decode()
            served = int(re.search(r"(\d+) requests in", report).group(1))  # type: ignore[union-attr]
            assert served > 500, report
            assert "Non-2xx" not in report, report
            assert "Socket errors" not in report, report

            flags = health_flags(await admin_get(proxy, "/clusters"), "backend")
            stats = await admin_get(proxy, "/stats")
    assert flags[ups[0].port] == flags[ups[1].port] == "healthy"
    for bad in (ups[2].port, erroring.port, stalling.port):
        assert flags[bad] != "healthy", (bad, flags)
    assert "failed_outlier_check" in flags[erroring.port]
    assert re.search(r"cluster\.backend\.upstream_rq_retry: [1-9]", stats)
    assert re.search(r"outlier_detection\.ejections_enforced_total: [1-9]", stats)
