"""Active health checks through the real proxy: HTTP and TCP probes against real upstreams, the
hosts they fail shown in admin /clusters with Envoy's flags, and balancing steering around them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.demo.upstream import DemoUpstream
from remora.proxy.server import ProxyServer
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


def _check(**extra: Any) -> dict[str, Any]:
    check: dict[str, Any] = {
        "timeout": "0.5s",
        "interval": "0.05s",
        "no_traffic_interval": "0.05s",
        "unhealthy_threshold": 2,
        "healthy_threshold": 2,
        "http_health_check": {"path": "/healthz"},
    }
    check.update(extra)
    return check


def _config(ports: list[int], check: dict[str, Any]) -> dict[str, Any]:
    return bootstrap([http_listener()], [cluster("backend", ports, health_checks=[check])])


async def _clusters(proxy: ProxyServer) -> dict[int, str]:
    return health_flags(await admin_get(proxy, "/clusters"), "backend")


async def _until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def _equals(get: Callable[[], Any], expected: object) -> Callable[[], Any]:
    async def check() -> bool:
        return bool(await get() == expected)

    return check


def _stat(proxy: ProxyServer, name: str) -> int:
    prefix = "cluster.backend.health_check."
    if name == "healthy":
        return proxy.store.gauge(prefix + name).value
    return proxy.store.counter(prefix + name).value


async def test_a_dead_host_is_failed_shown_and_avoided_then_readmitted() -> None:
    async with demo_upstreams(3) as ups:
        ports = [u.port for u in ups]
        async with running_proxy(_config(ports, _check())) as proxy:
            assert await _clusters(proxy) == dict.fromkeys(ports, "healthy")
            await ups[1].close()
            await _until(
                _equals(
                    lambda: _clusters(proxy),
                    {**dict.fromkeys(ports, "healthy"), ports[1]: "/failed_active_hc"},
                )
            )
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                names = [(await client.get("/")).headers["x-upstream-name"] for _ in range(20)]
            assert set(names) == {"up-0", "up-2"}
            assert _stat(proxy, "healthy") == 2
            assert _stat(proxy, "network_failure") >= 2
            assert proxy.store.gauge("cluster.backend.membership_healthy").value == 2

            revived = DemoUpstream(name="up-1", host="127.0.0.1", port=ports[1])
            await revived.start()
            try:
                await _until(_equals(lambda: _clusters(proxy), dict.fromkeys(ports, "healthy")))
                assert _stat(proxy, "healthy") == 3
            finally:
                await revived.close()


async def test_hosts_are_checked_before_the_cluster_serves() -> None:
    async with demo_upstreams(1) as ups, scripted_upstream(_closes) as dead:
        config = _config([dead.port, ups[0].port], _check(unhealthy_threshold=5))
        async with running_proxy(config) as proxy:
            # The first check of each host ran before start() returned: the failing host is out
            # at once (a new host needs one pass to join, one failure keeps it out).
            flags = await _clusters(proxy)
            assert flags == {dead.port: "/failed_active_hc", ups[0].port: "healthy"}
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                statuses = [(await client.get("/")).status_code for _ in range(10)]
            assert statuses == [200] * 10


async def _closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)


def _answering(status: int, heads: list[bytes] | None = None) -> Any:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_head(reader)
            if heads is not None:
                heads.append(head)
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok".encode())
            await writer.drain()

    return script


async def test_an_unexpected_status_fails_at_once_a_retriable_one_by_threshold() -> None:
    async with (
        demo_upstreams(1) as ups,
        scripted_upstream(_answering(503)) as bad,
        scripted_upstream(_answering(429)) as busy,
    ):
        check = _check(unhealthy_threshold=3)
        check["http_health_check"]["retriable_statuses"] = [{"start": 429, "end": 430}]
        # A 503 (neither expected nor retriable) fails a host on its first check, and so does a
        # 429: a new host needs a pass to join. The healthy one serves.
        config = _config([bad.port, busy.port, ups[0].port], check)
        async with running_proxy(config) as proxy:
            flags = await _clusters(proxy)
            assert flags == {
                bad.port: "/failed_active_hc",
                busy.port: "/failed_active_hc",
                ups[0].port: "healthy",
            }
            assert _stat(proxy, "network_failure") == 0


async def test_retriable_statuses_count_toward_the_unhealthy_threshold() -> None:
    status = {"code": 200}

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(f"HTTP/1.1 {status['code']} X\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()

    async with scripted_upstream(script) as up:
        # Checks 0.3 s apart: the poll sees the second failure long before the fourth.
        check = _check(unhealthy_threshold=4, interval="0.3s", no_traffic_interval="0.3s")
        check["http_health_check"]["retriable_statuses"] = [{"start": 429, "end": 430}]
        async with running_proxy(_config([up.port], check)) as proxy:
            assert await _clusters(proxy) == {up.port: "healthy"}
            status["code"] = 429
            started = _stat(proxy, "failure")
            await _until(lambda: _stat(proxy, "failure") >= started + 2)
            assert await _clusters(proxy) == {up.port: "healthy"}  # 2 of 4 failures: still in
            await _until(_equals(lambda: _clusters(proxy), {up.port: "/failed_active_hc"}))
            assert _stat(proxy, "failure") >= started + 4
            assert up.connections == 1  # one kept-alive connection for every check


async def test_the_check_request_is_what_the_config_says() -> None:
    heads: list[bytes] = []
    async with scripted_upstream(_answering(200, heads)) as up:
        check = _check(reuse_connection=False)
        check["http_health_check"].update(
            host="svc.internal",
            path="/ready?deep=1",
            request_headers_to_add=[{"header": {"key": "x-probe", "value": "remora"}}],
        )
        async with running_proxy(_config([up.port], check)):
            await _until(lambda: len(heads) >= 3)
    head = heads[0].decode().lower()
    assert head.startswith("get /ready?deep=1 http/1.1\r\n")
    assert "host: svc.internal\r\n" in head
    assert "user-agent: envoy/hc\r\n" in head
    assert "x-probe: remora\r\n" in head
    assert "connection: close\r\n" in head
    assert up.connections >= 3  # reuse_connection false: a connection a check

    heads.clear()
    async with (
        scripted_upstream(_answering(200, heads)) as up,
        running_proxy(_config([up.port], _check())),
    ):
        await _until(lambda: len(heads) >= 1)
    assert b"host: backend\r\n" in heads[0]  # no host set: the cluster's name


async def test_tcp_check_sends_and_expects_payloads_and_times_out() -> None:
    async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.readexactly(4) == b"ping":
            writer.write(b"PO")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"NG and more")
            await writer.drain()
        await reader.read()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    # "ping" as hex text; "PO" as hex and "NG" as base64 binary, arriving in separate reads.
    tcp = {"send": {"text": "70696e67"}, "receive": [{"text": "504f"}, {"binary": "Tkc="}]}
    check = _check(timeout="0.2s")
    del check["http_health_check"]
    check["tcp_health_check"] = tcp
    async with (
        scripted_upstream(pong) as good,
        scripted_upstream(mute) as silent,
        running_proxy(_config([good.port, silent.port], check)) as proxy,
    ):
        flags = await _clusters(proxy)
        assert flags == {good.port: "healthy", silent.port: "/failed_active_hc/active_hc_timeout"}


async def test_an_idle_cluster_is_checked_at_the_no_traffic_interval() -> None:
    async with demo_upstreams(1) as ups:
        check = _check()
        del check["no_traffic_interval"]  # Envoy's default: 60 s until the cluster has traffic
        async with running_proxy(_config([ups[0].port], check)) as proxy:
            await asyncio.sleep(0.5)
            assert _stat(proxy, "attempt") == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("timeout"), "health_checks[0].timeout: required"),
        (lambda c: c.pop("healthy_threshold"), "health_checks[0].healthy_threshold: required"),
        (lambda c: c.update(interval="0s"), "health_checks[0].interval: must be more than 0"),
        (
            lambda c: c.update(http_health_check=None, grpc_health_check={}),
            "not supported: static_resources.clusters[0].health_checks[0].grpc_health_check",
        ),
        (
            lambda c: c.update(http_health_check=None, tcp_health_check={"send": {"text": "zz"}}),
            "health_checks[0].tcp_health_check.send.text: must be hex digits",
        ),
        (
            lambda c: c["http_health_check"].update(path="no-slash"),
            "http_health_check.path: must start with /",
        ),
        (
            lambda c: c["http_health_check"].update(expected_statuses=[{"start": 300, "end": 200}]),
            "http_health_check.expected_statuses[0]: must be a range",
        ),
        (lambda c: c.update(event_log_path="/tmp/x"), "health_checks[0].event_log_path"),
    ],
)
def test_bad_health_check_config_names_the_field(change: Any, message: str) -> None:
    check = _check()
    change(check)
    check = {k: v for k, v in check.items() if v is not None}
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(_config([1], check)))
    assert any(message in str(e) for e in info.value.errors), info.value.errors


async def test_a_host_closing_kept_alive_connections_between_checks_stays_healthy() -> None:
    async def short_keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)  # its keep-alive timeout is shorter than the interval

    async with scripted_upstream(short_keep_alive) as up:
        check = _check(unhealthy_threshold=1, healthy_threshold=1)
        async with running_proxy(_config([up.port], check)) as proxy:
            await _until(lambda: _stat(proxy, "attempt") >= 6)
            assert _stat(proxy, "failure") == 0
            assert await _clusters(proxy) == {up.port: "healthy"}
            assert up.connections >= 6  # each check found its connection closed and made one


async def test_head_checks_complete_without_a_body() -> None:
    async def head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            await writer.drain()

    async with scripted_upstream(head) as up:
        check = _check()
        check["http_health_check"]["method"] = "HEAD"
        async with running_proxy(_config([up.port], check)) as proxy:
            await _until(lambda: _stat(proxy, "success") >= 3)
            assert _stat(proxy, "failure") == 0
            assert up.connections == 1
