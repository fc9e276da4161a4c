"""Retries through the real proxy: real clients (httpx, curl) and real upstreams on loopback.

Each test makes an upstream fail in one way (a status, a reset, a dead port, a stall) and checks
what the client saw, what the upstreams received, and what /stats and the access log say.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    file_access_log,
    http_listener,
    read_log,
    running_proxy,
    stat_value,
)
from tests.proxy.procs import free_port
from tests.proxy.scripted import TakingTurns, Turn, scripted_upstream

LOG_FORMAT = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST%\n"
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
        "PreviousHostsPredicate"
    },
}


def _config(
    ports: list[int],
    policy: dict[str, Any] | None,
    log: Path | None = None,
    vhost: dict[str, Any] | None = None,
    route: dict[str, Any] | None = None,
    hcm: dict[str, Any] | None = None,
    max_retries: int | None = None,
    **cluster_extra: Any,
) -> dict[str, Any]:
    if max_retries is not None:
        cluster_extra["circuit_breakers"] = {"thresholds": [{"max_retries": max_retries}]}
    action: dict[str, Any] = {"cluster": "backend", **(route or {})}
    if policy is not None:
        action["retry_policy"] = policy
    virtual_host = {
        "name": "all",
        "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": action}],
        **(vhost or {}),
    }
    extra = dict(hcm or {})
    if log is not None:
        extra["access_log"] = file_access_log(log, LOG_FORMAT)
    listener = http_listener(virtual_hosts=[virtual_host], name="ingress", **extra)
    return bootstrap([listener], [cluster("backend", ports, **cluster_extra)])


async def _stats(client: httpx.AsyncClient, proxy: Any) -> str:
    return (await client.get(f"http://127.0.0.1:{proxy.admin.port}/stats")).text


def _cluster_stat(stats: str, name: str) -> int:
    return stat_value(stats, f"cluster.backend.{name}")


async def test_a_503_is_retried_and_the_client_sees_the_200(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    turns = TakingTurns([Turn(503, body=b"busy")], then=Turn(200, body=b"fine"))
    async with scripted_upstream(turns) as up:
        config = _config(
            [up.port],
            {"retry_on": "5xx"},
            log,
            vhost={"include_request_attempt_count": True},
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            response = await client.get(
                f"http://127.0.0.1:{proxy.listener_port('ingress')}/x",
                headers={"x-envoy-attempt-count": "7"},
            )
            stats = await _stats(client, proxy)
    assert (response.status_code, response.text) == (200, "fine")
    assert [fields["x-envoy-attempt-count"] for fields, _ in turns.requests] == ["1", "2"]
    assert _cluster_stat(stats, "upstream_rq_retry") == 1
    assert _cluster_stat(stats, "upstream_rq_retry_success") == 1
    assert _cluster_stat(stats, "upstream_rq_retry_backoff_exponential") == 1
    assert _cluster_stat(stats, "upstream_rq_total") == 2
    # The retried 503 is not the request's outcome: one response, a 2xx, is charged.
    assert _cluster_stat(stats, "upstream_rq_completed") == 1
    assert _cluster_stat(stats, "upstream_rq_2xx") == 1
    assert _cluster_stat(stats, "upstream_rq_active") == 0
    assert await read_log(log, 1) == [f"200 - 127.0.0.1:{up.port}"]


async def test_retries_stop_at_num_retries_with_urx(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    turns = TakingTurns([], then=Turn(503, body=b"busy"))
    async with scripted_upstream(turns) as up:
        config = _config(
            [up.port], {"retry_on": "gateway-error", "num_retries": 2}, log, max_retries=10
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{proxy.listener_port('ingress')}/x")
            stats = await _stats(client, proxy)
    assert (response.status_code, response.text) == (503, "busy")
    assert len(turns.requests) == 3
    assert _cluster_stat(stats, "upstream_rq_retry") == 2
    assert _cluster_stat(stats, "upstream_rq_retry_limit_exceeded") == 1
    assert _cluster_stat(stats, "upstream_rq_retry_success") == 0
    assert await read_log(log, 1) == [f"503 URX 127.0.0.1:{up.port}"]


async def test_a_connect_failure_is_retried_on_another_host_with_previous_hosts(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    dead = free_port()
    policy = {
        "retry_on": "connect-failure",
        "retry_host_predicate": [PREVIOUS_HOSTS],
        # RANDOM may draw the dead host again; enough re-picks make that vanishingly rare.
        "host_selection_retry_max_attempts": 40,
    }
    async with demo_upstreams(1) as ups:
        live = ups[0].port
        config = _config([dead, live], policy, log, lb_policy="RANDOM")
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            statuses = [(await client.get(url)).status_code for _ in range(30)]
            stats = await _stats(client, proxy)
    assert statuses == [200] * 30
    retries = _cluster_stat(stats, "upstream_rq_retry")
    assert 1 <= retries < 30  # about half the requests drew the dead host first
    assert _cluster_stat(stats, "upstream_cx_connect_fail") == retries
    assert _cluster_stat(stats, "upstream_rq_retry_success") == retries
    # The failed attempt's UF is not the request's outcome; the live host is the one logged.
    assert await read_log(log, 30) == [f"200 - 127.0.0.1:{live}"] * 30


async def test_connect_failure_alone_does_not_retry_a_reset(tmp_path: Path) -> None:
    turns = TakingTurns([Turn(200, body=b"0123456789", cut=True)], then=Turn(200))
    async with scripted_upstream(turns) as up:
        config = _config([up.port], {"retry_on": "connect-failure"})
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"http://127.0.0.1:{proxy.listener_port('ingress')}/x")
            stats = await _stats(client, proxy)
    assert len(turns.requests) == 1
    assert _cluster_stat(stats, "upstream_rq_retry") == 0


async def test_a_reset_before_the_head_is_retried() -> None:
    async def reset_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if up.connections == 1:
            await reader.readuntil(b"\r\n\r\n")
            return  # closed without a response
        await turns(reader, writer)

    turns = TakingTurns([], then=Turn(200, body=b"second"))
    async with scripted_upstream(reset_then_answer) as up:
        config = _config([up.port], {"retry_on": "reset"})
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{proxy.listener_port('ingress')}/x")
            stats = await _stats(client, proxy)
    assert (response.status_code, response.text) == (200, "second")
    assert _cluster_stat(stats, "upstream_rq_retry") == 1


async def test_a_stalled_try_times_out_and_is_retried_elsewhere(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    stall = TakingTurns([], then=Turn(200, delay=30))
    policy = {
        "retry_on": "5xx",
        "num_retries": 3,
        "per_try_timeout": "0.2s",
        "retry_host_predicate": [PREVIOUS_HOSTS],
    }
    async with scripted_upstream(stall) as slow, demo_upstreams(1) as ups:
        fast = ups[0].port
        config = _config([slow.port, fast], policy, log)
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            started = time.monotonic()
            responses = [await client.get(url) for _ in range(4)]
            elapsed = time.monotonic() - started
            stats = await _stats(client, proxy)
    assert [r.status_code for r in responses] == [200] * 4
    assert {r.headers["x-upstream-name"] for r in responses} == {"up-0"}
    timeouts = _cluster_stat(stats, "upstream_rq_per_try_timeout")
    assert timeouts >= 1 and timeouts == _cluster_stat(stats, "upstream_rq_retry")
    assert len(stall.requests) == timeouts
    assert _cluster_stat(stats, "upstream_rq_timeout") == 0
    assert elapsed < 4 * 0.2 + 2
    assert await read_log(log, 4) == [f"200 - 127.0.0.1:{fast}"] * 4


async def test_the_route_timeout_bounds_all_tries(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    stall = TakingTurns([], then=Turn(200, delay=30))
    policy = {"retry_on": "reset", "num_retries": 10, "per_try_timeout": "0.3s"}
    async with scripted_upstream(stall) as slow:
        config = _config([slow.port], policy, log, route={"timeout": "0.5s"}, max_retries=20)
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            started = time.monotonic()
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            response = await client.get(url)
            elapsed = time.monotonic() - started
            stats = await _stats(client, proxy)
    assert response.status_code == 504
    assert 0.45 < elapsed < 1.5
    assert _cluster_stat(stats, "upstream_rq_per_try_timeout") == 1
    assert _cluster_stat(stats, "upstream_rq_timeout") == 1
    assert _cluster_stat(stats, "upstream_rq_active") == 0
    assert await read_log(log, 1) == [f"504 UT 127.0.0.1:{slow.port}"]


async def test_retriable_status_codes_and_headers() -> None:
    turns = TakingTurns(
        [Turn(418, body=b"teapot"), Turn(200, headers=(("x-try-again", "yes"),), body=b"no")],
        then=Turn(200, body=b"yes"),
    )
    policy = {
        "retry_on": "retriable-status-codes,retriable-headers",
        "num_retries": 3,
        "retriable_status_codes": [418],
        "retriable_headers": [{"name": "x-try-again", "string_match": {"exact": "yes"}}],
    }
    async with scripted_upstream(turns) as up:
        config = _config([up.port], policy)
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            retried = await client.get(url)
            turns.answer_next(Turn(503, body=b"not listed"))
            passed = await client.get(url)
            stats = await _stats(client, proxy)
    assert (retried.status_code, retried.text) == (200, "yes")
    assert (passed.status_code, passed.text) == (503, "not listed")
    assert _cluster_stat(stats, "upstream_rq_retry") == 2


async def test_request_headers_enable_retries_for_trusted_clients_only() -> None:
    turns = TakingTurns([], then=Turn(503, body=b"busy"))
    retry_headers = {
        "x-envoy-retry-on": "retriable-status-codes",
        "x-envoy-retriable-status-codes": "503",
        "x-envoy-max-retries": "3",
    }
    hcm = {"use_remote_address": True, "xff_num_trusted_hops": 1}
    async with scripted_upstream(turns) as up:
        config = _config([up.port], None, hcm=hcm, max_retries=10)
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            internal = await client.get(url, headers=retry_headers)
            tries_internal = len(turns.requests)
            # x-forwarded-for names the client (one trusted hop): a public address is external.
            external = await client.get(
                url, headers={**retry_headers, "x-forwarded-for": "8.8.8.8"}
            )
            tries_external = len(turns.requests) - tries_internal
            plain = await client.get(url)
            stats = await _stats(client, proxy)
    assert (internal.status_code, tries_internal) == (503, 4)
    assert (external.status_code, tries_external) == (503, 1)
    assert plain.status_code == 503 and len(turns.requests) == 6
    assert _cluster_stat(stats, "upstream_rq_retry") == 3
    # Consumed by the proxy, from trusted and untrusted clients alike.
    assert not any(name.startswith("x-envoy-r") for fields, _ in turns.requests for name in fields)


async def test_max_retries_header_overrides_the_virtual_host_policy() -> None:
    turns = TakingTurns([], then=Turn(503))
    vhost = {"retry_policy": {"retry_on": "5xx", "num_retries": 1}}
    async with scripted_upstream(turns) as up:
        config = _config([up.port], None, vhost=vhost, max_retries=10)
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            await client.get(url, headers={"x-envoy-max-retries": "2"})
    assert len(turns.requests) == 3


async def test_a_request_body_is_replayed_on_retry() -> None:
    turns = TakingTurns([Turn(503)], then=Turn(200, body=b"stored"))
    body = bytes(range(256)) * 40
    async with scripted_upstream(turns) as up:
        config = _config([up.port], {"retry_on": "5xx", "num_retries": 2})
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/upload"
            fixed = await client.post(url, content=body)
            turns.answer_next(Turn(503))

            async def chunks() -> Any:
                for i in range(0, len(body), 1000):
                    yield body[i : i + 1000]

            chunked = await client.post(url, content=chunks())
    assert (fixed.status_code, chunked.status_code) == (200, 200)
    assert [len(b) for _, b in turns.requests] == [len(body)] * 4
    assert all(b == body for _, b in turns.requests)
    assert turns.requests[3][0].get("transfer-encoding") == "chunked"


async def test_a_body_over_the_buffer_limit_is_not_retried() -> None:
    turns = TakingTurns([Turn(503, body=b"busy")], then=Turn(200))
    async with scripted_upstream(turns) as up:
        config = _config(
            [up.port],
            {"retry_on": "5xx"},
            vhost={"per_request_buffer_limit_bytes": 1000},
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/upload"
            response = await client.post(url, content=b"x" * 1001)
            small = await client.post(url, content=b"x" * 1000)
            stats = await _stats(client, proxy)
    assert (response.status_code, response.text) == (503, "busy")
    assert small.status_code == 200
    assert _cluster_stat(stats, "upstream_rq_retry") == 0
    assert len(turns.requests) == 2


@pytest.mark.parametrize(
    "thresholds",
    [
        {"max_retries": 0},
        {"retry_budget": {"budget_percent": {"value": 0}, "min_retry_concurrency": 0}},
    ],
    ids=["max_retries", "retry_budget"],
)
async def test_the_breaker_refuses_retries_with_overflow_and_uo(
    tmp_path: Path, thresholds: dict[str, Any]
) -> None:
    log = tmp_path / "access.log"
    turns = TakingTurns([], then=Turn(503, body=b"busy"))
    async with scripted_upstream(turns) as up:
        config = _config(
            [up.port],
            {"retry_on": "5xx"},
            log,
            circuit_breakers={"thresholds": [thresholds]},
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{proxy.listener_port('ingress')}/x")
            stats = await _stats(client, proxy)
    assert (response.status_code, response.text) == (503, "busy")
    assert len(turns.requests) == 1
    assert _cluster_stat(stats, "upstream_rq_retry_overflow") == 1
    assert _cluster_stat(stats, "upstream_rq_retry") == 0
    assert await read_log(log, 1) == [f"503 UO 127.0.0.1:{up.port}"]


async def test_concurrent_retries_beyond_max_retries_overflow() -> None:
    # Every first try answers 503 at once and every retry 200 after a while, so the retries of
    # concurrent requests overlap and only `max_retries` of them may be in flight at once.
    def by_attempt(fields: dict[str, str]) -> Turn:
        return Turn(503) if fields["x-envoy-attempt-count"] == "1" else Turn(200, delay=1.0)

    turns = TakingTurns([], choose=by_attempt)
    count = 6
    async with scripted_upstream(turns) as up:
        config = _config(
            [up.port],
            {"retry_on": "5xx", "retry_back_off": {"base_interval": "0.001s"}},
            vhost={"include_request_attempt_count": True},
            circuit_breakers={"thresholds": [{"max_retries": 2}]},
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
            stats = await _stats(client, proxy)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 503, 503, 503, 503]
    assert _cluster_stat(stats, "upstream_rq_retry") == 2
    assert _cluster_stat(stats, "upstream_rq_retry_overflow") == 4


async def test_no_retry_once_the_response_head_was_forwarded() -> None:
    # Head first, then the body after longer than the per-try timeout, then a cut: neither the
    # timeout nor the reset may retry a response the client has started to receive.
    turns = TakingTurns(
        [Turn(200, body=b"0123456789", body_delay=0.4), Turn(200, body=b"0123456789", cut=True)],
        then=Turn(200),
    )
    policy = {"retry_on": "5xx,reset", "num_retries": 3, "per_try_timeout": "0.2s"}
    async with scripted_upstream(turns) as up:
        config = _config([up.port], policy)
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            slow = await client.get(url)
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(url)
            stats = await _stats(client, proxy)
    assert (slow.status_code, slow.text) == (200, "0123456789")
    assert len(turns.requests) == 2
    assert _cluster_stat(stats, "upstream_rq_retry") == 0
    assert _cluster_stat(stats, "upstream_rq_per_try_timeout") == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_no_retry_once_an_interim_response_was_forwarded() -> None:
    turns = TakingTurns([Turn(503, body=b"busy", interim=103)], then=Turn(200))
    async with scripted_upstream(turns) as up:
        config = _config([up.port], {"retry_on": "5xx"})
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            done = await asyncio.to_thread(
                subprocess.run,
                ["curl", "-s", "-i", url],
                capture_output=True,
                timeout=10,
                check=True,
            )
            async with httpx.AsyncClient() as client:
                stats = await _stats(client, proxy)
    assert done.stdout.startswith(b"HTTP/1.1 103 ")
    assert b"\r\n\r\nHTTP/1.1 503 " in done.stdout and done.stdout.endswith(b"busy")
    assert len(turns.requests) == 1
    assert _cluster_stat(stats, "upstream_rq_retry") == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_post_is_retried_with_its_body_and_clusters_show_max_retries() -> None:
    turns = TakingTurns([Turn(502)], then=Turn(201, body=b"created"))
    async with scripted_upstream(turns) as up:
        config = _config(
            [up.port],
            {"retry_on": "gateway-error"},
            circuit_breakers={"thresholds": [{"max_retries": 7}]},
        )
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/items"
            done = await asyncio.to_thread(
                subprocess.run,
                ["curl", "-s", "-w", " %{http_code}", "--data-binary", "name=x", url],
                capture_output=True,
                timeout=10,
                check=True,
            )
            async with httpx.AsyncClient() as client:
                assert proxy.admin is not None
                admin = f"http://127.0.0.1:{proxy.admin.port}"
                clusters = (await client.get(f"{admin}/clusters")).text
                as_json = (await client.get(f"{admin}/clusters?format=json")).json()
    assert done.stdout == b"created 201"
    assert [b for _, b in turns.requests] == [b"name=x", b"name=x"]
    assert "backend::default_priority::max_retries::7\n" in clusters
    assert "backend::default_priority::max_requests::1024\n" in clusters
    (thresholds,) = as_json["cluster_statuses"][0]["circuit_breakers"]["thresholds"]
    assert thresholds["max_retries"] == 7


async def test_a_ring_hash_retry_moves_to_another_host() -> None:
    # One key, one host: without moving the key every re-pick would land on the dead host.
    dead = free_port()
    policy = {
        "retry_on": "connect-failure",
        "retry_host_predicate": [PREVIOUS_HOSTS],
        "host_selection_retry_max_attempts": 30,
    }
    async with demo_upstreams(1) as ups:
        route = {"hash_policy": [{"header": {"header_name": "x-user"}}]}
        config = _config(
            [dead, ups[0].port], policy, route=route, lb_policy="RING_HASH", max_retries=100
        )
        async with running_proxy(config) as proxy, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress')}/x"
            users = [f"user-{i}" for i in range(40)]
            statuses = [
                (await client.get(url, headers={"x-user": user})).status_code for user in users
            ]
            stats = await _stats(client, proxy)
    assert _cluster_stat(stats, "upstream_rq_retry") >= 1  # some users hash to the dead host
    assert statuses == [200] * len(users)
