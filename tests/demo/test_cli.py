"""`remora demo` as a process, the way the README tells a newcomer to use it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def _demo(*flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "remora", "demo", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = []
    deadline = time.monotonic() + 20
    while not banner or "Press Ctrl-C" not in banner[-1]:
        line = process.stdout.readline()
        assert line, f"demo exited early: {process.communicate()[1]}"
        assert time.monotonic() < deadline
        banner.append(line)
    try:
        yield process, "".join(banner)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_demo_runs_its_own_curl_lines_and_stops_cleanly_on_ctrl_c() -> None:
    http, tcp, admin, a, b = _free_ports(5)
    flags = ["--http-port", str(http), "--tcp-port", str(tcp), "--admin-port", str(admin),
             "--upstream-ports", f"{a},{b}"]  # fmt: skip
    with _demo(*flags) as (process, banner):
        assert f"demo-a (127.0.0.1:{a}), demo-b (127.0.0.1:{b})" in banner
        curls = [line.split("#")[0].strip() for line in banner.splitlines()]
        curls = [line for line in curls if line.startswith("curl ")]
        assert len(curls) >= 6
        outputs = []
        for line in curls:
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", line], capture_output=True, text=True, timeout=10
            )
            assert done.returncode == 0, (line, done.stderr)
            outputs.append(done.stdout)
        assert '"upstream": "demo-a"' in outputs[0]  # the first /hello
        assert "upstream_rq_2xx" in "".join(outputs)

        # --print-config with the same flags is the bootstrap that is running.
        printed = subprocess.run(
            [sys.executable, "-m", "remora", "demo", *flags, "--print-config"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        dump = httpx.get(f"http://127.0.0.1:{admin}/config_dump").json()
        running = json.dumps(dump)
        for port in (http, tcp, a, b):
            assert f'"port_value": {port}' in printed.stdout
            assert re.search(rf'"port_value": "?{port}"?', running), port

        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Traceback" not in err
    assert "SIGINT: shutting down" in err and "drained in" in err


def test_print_config_defaults_are_the_running_defaults() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "remora", "demo", "--print-config"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ports = {int(p) for p in re.findall(r'"port_value": (\d+)', printed.stdout)}
    assert ports == {10000, 10001, 9901, 18081, 18082}
    help_text = subprocess.run(
        [sys.executable, "-m", "remora", "demo", "--help"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for port in ports:
        assert str(port) in help_text
