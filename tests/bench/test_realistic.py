"""The realistic profile's generated configs, run for real: every peer must route the same requests
to the same routes (in order, first match), add the route's response header, send a generated
x-request-id upstream and write access log lines, or the realistic-1k row compares different work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from suite import probe
from suite.peers import BY_NAME
from suite.peers.base import Listener
from suite.ports import free_port
from suite.procs import Managed
from suite.realistic import ALL_ROUTES, ECHO_HEADER, ROUTE_HEADER
from suite.upstream import BODIES, REALISTIC_SPEC, Upstream

HOST = "127.0.0.1"
PEERS = ("remora", "haproxy", "nginx", "caddy")

# (path, request headers, the route that must answer). Near misses sit next to each match.
CASES: list[tuple[str, dict[str, str], str]] = [
    ("/1k", {}, "catch-all"),
    ("/api/v2/users/7", {"X-Api-Version": "2"}, "users-v2"),
    ("/api/v2/users/7", {"X-Api-Version": "3"}, "catch-all"),
    ("/api/v1/orders/42", {}, "orders"),
    ("/api/v1/orders/42x", {}, "catch-all"),
    ("/api/v1/orders/42/items/3", {}, "order-items"),
    ("/static/app.css", {}, "static"),
    ("/static/app.cssx", {}, "catch-all"),
    ("/en-us/about", {}, "localized"),
    ("/index.php", {}, "scripts"),
    ("/indexXphp", {}, "catch-all"),  # the regex's `\.` must survive each config's quoting
    ("/1k", {"X-Canary": "always"}, "canary"),
    ("/1k", {"X-Debug-Session": "abc"}, "debug"),
    ("/1k", {"Host": "admin.example.com"}, "admin"),
    ("/1k", {"Host": "adminXexample.com"}, "catch-all"),
    ("/1k", {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"}, "mobile"),
    ("/1k", {"Content-Type": "application/grpc+proto"}, "grpc"),
    ("/t/acme/reports", {"X-Tenant": "acme"}, "tenant"),
    ("/t/acme/reports", {"X-Tenant": "9acme"}, "catch-all"),
    # Order: a request both the canary and the debug route match goes to the earlier one.
    ("/1k", {"X-Debug-Session": "abc", "X-Canary": "always"}, "canary"),
]


def test_cases_cover_every_route() -> None:
    assert {route for _, _, route in CASES} == {route.name for route in ALL_ROUTES}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    server = Upstream(tmp_path_factory.mktemp("upstream"), None, HOST, REALISTIC_SPEC)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("name", PEERS)
def test_realistic_config(name: str, upstream: Upstream, tmp_path: Path) -> None:
    peer = BY_NAME[name]
    port = free_port(HOST)
    listener = Listener("http", HOST, port, upstream.host, upstream.port, profile="realistic")
    launch = peer.launch(listener, tmp_path)
    proc = Managed(name, launch.argv, tmp_path / "peer.log", None, launch.env, stdout=launch.stdout)
    try:
        probe.wait_ready(proc, HOST, port, "/1k", BODIES["1k"])
        seen = probe.check_realistic(proc, HOST, port, "/1k", launch.access_log)
        assert "x-route: catch-all" in seen
        for path, headers, route in CASES:
            response = probe.fetch(HOST, port, path, headers=headers)
            assert response.headers.get(ROUTE_HEADER) == route, (path, headers, response)
        # Every request got its own id, and the upstream received it.
        ids = {probe.fetch(HOST, port, "/1k").headers[ECHO_HEADER] for _ in range(3)}
        assert len(ids) == 3
        assert launch.access_log is not None
        assert probe.count_lines(launch.access_log) >= 2 + len(CASES)
        proc.check_alive()
    finally:
        proc.stop()
