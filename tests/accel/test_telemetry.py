"""TCP telemetry from a sockops program on a fresh cgroup: what the kernel counted for each
connection of a child process, checked against what that process sent and received."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remora.accel.build import build
from remora.accel.telemetry import CGROUP2, TcpEvent, TcpTelemetry
from tests.conftest import require_privileged

CHILD = """
import json, socket, threading
server = socket.create_server(("127.0.0.1", 0))
port = server.getsockname()[1]
def serve():
    peer, _ = server.accept()
    got = 0
    while got < 100_000:
        got += len(peer.recv(65536))
    peer.sendall(b"r" * 5_000)
    peer.close()
t = threading.Thread(target=serve)
t.start()
client = socket.create_connection(("127.0.0.1", port))
client.sendall(b"s" * 100_000)
got = 0
while got < 5_000:
    got += len(client.recv(65536))
client.close()
t.join()
server.close()
print(json.dumps({"port": port}))
"""


@pytest.fixture
def cgroup() -> Iterator[Path]:
    require_privileged("sockops programs and cgroups need root")
    cg = CGROUP2 / f"remora-accel-test-{os.getpid()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        cg.rmdir()


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    build("tcp_telemetry")


def _in(cg: Path) -> None:
    (cg / "cgroup.procs").write_text(str(os.getpid()))


def _events(tel: TcpTelemetry, port: int, want: int, wait: float = 5.0) -> list[TcpEvent]:
    found: list[TcpEvent] = []
    deadline = time.monotonic() + wait
    while len(found) < want and time.monotonic() < deadline:
        found += [e for e in tel.poll(timeout=0.2) if port in (e.local[1], e.remote[1])]
    return found


def test_each_connection_reports_rtt_bytes_and_lifetime(cgroup: Path) -> None:
    with TcpTelemetry(cgroup) as tel:
        out = subprocess.run(
            [sys.executable, "-S", "-c", CHILD],
            preexec_fn=lambda: _in(cgroup),
            check=True,
            capture_output=True,
            text=True,
        )
        port = json.loads(out.stdout)["port"]
        events = _events(tel, port, 2)
        assert tel.dropped == 0
    by_side = {e.passive: e for e in events}
    assert len(events) == 2 and set(by_side) == {True, False}
    client, server = by_side[False], by_side[True]
    assert client.remote == ("127.0.0.1", port) and server.local == ("127.0.0.1", port)
    assert client.local == server.remote  # the two ends of one connection
    # The kernel counts in sequence space, where a SYN and a FIN can each take one.
    for counted, sent in (
        (client.bytes_acked, 100_000),
        (client.bytes_received, 5_000),
        (server.bytes_acked, 5_000),
        (server.bytes_received, 100_000),
    ):
        assert sent <= counted <= sent + 2
    for e in events:
        assert 0 < e.srtt_us < 1_000_000  # loopback: well under a second
        assert e.total_retrans == 0
        assert 0 < e.lifetime_ns < 10_000_000_000


def test_connections_outside_the_cgroup_are_not_seen(cgroup: Path) -> None:
    with TcpTelemetry(cgroup) as tel:
        out = subprocess.run(
            [sys.executable, "-S", "-c", CHILD], check=True, capture_output=True, text=True
        )  # not moved into the cgroup
        port = json.loads(out.stdout)["port"]
        assert _events(tel, port, 1, wait=1.0) == []


def _attached_to(cg: Path) -> list[str]:
    """Names of the programs attached to the cgroup, as bpftool sees them."""
    bpftool = shutil.which("bpftool")
    assert bpftool is not None
    out = subprocess.run(
        [bpftool, "-j", "cgroup", "show", str(cg)], capture_output=True, text=True, check=True
    ).stdout
    return [p.get("name", "") for p in json.loads(out.strip() or "[]")]


def test_closing_detaches(cgroup: Path) -> None:
    tel = TcpTelemetry(cgroup)
    assert _attached_to(cgroup) == ["tcp_telemetry"]
    tel.close()
    assert _attached_to(cgroup) == []
