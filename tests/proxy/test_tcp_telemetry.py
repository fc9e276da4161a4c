"""`remora proxy --bpf-telemetry`: the kernel's per-connection TCP figures as listener and
cluster stats. The proxy runs as a user runs it, in a fresh cgroup, and its admin is read."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from remora.accel.build import build
from remora.accel.telemetry import CGROUP2
from remora.proxy.tcp_telemetry import RTT_BUCKETS, Recorder
from tests.conftest import require_privileged
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy

_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}


def _write_config(tmp_path: Path, backend: dict[str, Any], listen: int, admin: int) -> Path:
    """A bootstrap for `remora proxy` as a subprocess: one listener, the backend, the admin."""
    config = bootstrap([http_listener()], [backend])
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listen
    config["admin"]["address"]["socket_address"]["port_value"] = admin
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps(config))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cgroup() -> Iterator[Path]:
    require_privileged("sockops programs and cgroups need root")
    cg = CGROUP2 / f"remora-proxy-telemetry-{os.getpid()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        for _ in range(50):  # the proxy's exit empties it a moment after it is reaped
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


async def test_recorder_charges_listeners_and_clusters_and_skips_the_rest() -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            rec = Recorder(proxy)
            port = proxy.listener_port("http")
            assert rec.record(True, ("127.0.0.1", port), ("127.0.0.1", 5555), 250, 1, 10, 20, 10**6)
            assert rec.record(
                False, ("127.0.0.1", 4444), ("127.0.0.1", ups[0].port), 2000, 0, 5, 6, 1
            )
            assert not rec.record(True, ("127.0.0.1", 1), ("127.0.0.1", 2), 1, 0, 0, 0, 1)
            assert not rec.record(False, ("127.0.0.1", 3), ("10.9.9.9", 80), 1, 0, 0, 0, 1)
            store = proxy.store
            prefix = f"listener.{proxy.listeners[0].config.stat_prefix}.tcp"
            assert store.counter(f"{prefix}.connections").value == 1
            assert store.counter(f"{prefix}.retransmits").value == 1
            assert store.counter(f"{prefix}.bytes_received").value == 20
            assert store.histogram(f"{prefix}.rtt_ms", RTT_BUCKETS).sum == pytest.approx(0.25)
            assert store.counter("cluster.backend.tcp.connections").value == 1
            rtt = store.histogram("cluster.backend.tcp.rtt_ms", RTT_BUCKETS)
            assert rtt.sum == pytest.approx(2.0)


async def test_the_proxy_reports_tcp_rtt_per_listener_and_cluster(
    cgroup: Path, tmp_path: Path
) -> None:
    build("tcp_telemetry")
    listen, admin = _free_port(), _free_port()
    async with demo_upstreams(1) as ups:
        backend = cluster("backend", [ups[0].port])
        # one request per upstream connection, so each closes and reports
        options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        backend["typed_extension_protocol_options"] = {
            options: {
                "@type": f"type.googleapis.com/{options}",
                "common_http_protocol_options": {"max_requests_per_connection": 1},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        }
        path = _write_config(tmp_path, backend, listen, admin)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remora", "proxy", "-c", str(path),
            "--bpf-telemetry", str(cgroup), "--disable-hot-restart",
            env=_ENV,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())),
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                for _ in range(100):
                    try:
                        await client.get(f"http://127.0.0.1:{admin}/ready")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                for _ in range(3):
                    reply = await client.get(
                        f"http://127.0.0.1:{listen}/", headers={"connection": "close"}
                    )
                    assert reply.status_code == 200
                prometheus = ""
                for _ in range(50):
                    prometheus = (
                        await client.get(f"http://127.0.0.1:{admin}/stats/prometheus")
                    ).text
                    if _count(prometheus, "cluster", "connections_total") >= 3 and (
                        _count(prometheus, "listener", "connections_total") >= 3
                    ):
                        break
                    await asyncio.sleep(0.1)
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert "TCP telemetry on" in log, log
    # three client connections closed on the listener, three upstream ones on the cluster
    for owner in ("listener", "cluster"):
        assert _count(prometheus, owner, "connections_total") >= 3, prometheus
        assert _count(prometheus, owner, "rtt_ms_count") >= 3, prometheus
        assert _count(prometheus, owner, "lifetime_ms_count") >= 3, prometheus


def _count(prometheus: str, owner: str, metric: str) -> float:
    """The value of `envoy_<owner>..._tcp_<metric>` (a listener's name carries its address)."""
    for line in prometheus.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.startswith(f"envoy_{owner}") and name.endswith(f"_tcp_{metric}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_telemetry_that_cannot_start_is_one_line_and_the_proxy_serves(
    tmp_path: Path,
) -> None:
    require_privileged("the point is a kernel-side failure, not a privilege one")
    build("tcp_telemetry")
    listen, admin = _free_port(), _free_port()
    async with demo_upstreams(1) as ups:
        path = _write_config(tmp_path, cluster("backend", [ups[0].port]), listen, admin)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remora", "proxy", "-c", str(path),
            "--bpf-telemetry", str(tmp_path / "not-a-cgroup"), "--disable-hot-restart",
            env=_ENV, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                for _ in range(100):
                    try:
                        reply = await client.get(f"http://127.0.0.1:{listen}/")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                assert reply.status_code == 200
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    said = [line for line in err.decode().splitlines() if "TCP telemetry" in line]
    assert len(said) == 1 and "TCP telemetry is off" in said[0] and "not-a-cgroup" in said[0]
    # and with workers it is refused up front
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remora", "proxy", "-c", str(path), "--bpf-telemetry",
        "--concurrency", "2", env=_ENV, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode == 2 and b"--bpf-telemetry needs --concurrency 1" in err


async def test_the_default_cgroup_is_refused_when_it_is_the_root(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remora.accel import telemetry
    from remora.proxy import tcp_telemetry

    monkeypatch.setattr(telemetry, "own_cgroup", lambda: telemetry.CGROUP2)
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        async with running_proxy(config) as proxy:
            with caplog.at_level("WARNING", logger="remora.proxy.telemetry"):
                assert tcp_telemetry.start(proxy) is None
    assert "root cgroup: name one with --bpf-telemetry" in caplog.text
