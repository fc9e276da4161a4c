"""Hot restart across real processes: `remora proxy --restart-epoch N` takes over from N-1.

Each test runs epoch 0 as a process, starts epoch 1 beside it on the same base id, and looks at
what real clients see on the shared port: the same socket answering throughout, no refused or
reset connection under load, the new epoch's config, the parent's open request finishing, and
the parent's counters continuing in the child's /stats.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from remora.proxy.hot_restart.protocol import VERSION, Hello, encode, socket_name
from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    direct_routes,
    http_listener,
    routes_to,
    set_routes,
    tcp_listener,
)
from tests.proxy.procs import (
    StderrLines,
    admin_stats,
    free_port,
    get_on_new_connection,
    spawn_proxy,
    start_proxy_process,
    unique_base_id,
)

Process = asyncio.subprocess.Process
TOOK_OVER = re.compile(r"stopped accepting (\d+) ms after the handover began, (\d+) ms after")


class Epochs:
    """The processes of one hot-restarting proxy, all started on one base id."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.base_id = unique_base_id()
        self.processes: list[tuple[Process, StderrLines]] = []
        self.ports: dict[str, int] = {}

    async def first(self, config: dict[str, Any], *extra: str) -> tuple[Process, StderrLines]:
        process, self.ports = await start_proxy_process(
            config, self.tmp_path, "info", "--base-id", self.base_id, *extra
        )
        self.processes.append((process, StderrLines(process)))
        return self.processes[-1]

    async def next(
        self, config: dict[str, Any], *extra: str, epoch: int | None = None
    ) -> tuple[Process, StderrLines]:
        """Start the next epoch on `config` (the same ports) and wait until it is live."""
        epoch = len(self.processes) if epoch is None else epoch
        path = self.tmp_path / f"bootstrap-{epoch}.json"
        path.write_text(json.dumps(config))
        process = await spawn_proxy(
            path, "info", "--base-id", self.base_id, "--restart-epoch", str(epoch), *extra
        )
        lines = StderrLines(process)
        self.processes.append((process, lines))
        await lines.wait_for(f"hot restart: epoch {epoch} took", timeout=20)
        return process, lines

    async def close(self) -> None:
        for process, lines in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 10)
            await lines.close()
            assert "Traceback" not in lines.text, lines.text


@asynccontextmanager
async def _epochs(tmp_path: Path) -> AsyncIterator[Epochs]:
    epochs = Epochs(tmp_path)
    try:
        yield epochs
    finally:
        await epochs.close()


def _handover_ms(lines: StderrLines) -> tuple[int, int]:
    """(handover began -> parent stopped accepting, child process start -> the same), in ms."""
    found = next(m for line in lines.lines if (m := TOOK_OVER.search(line)))
    return int(found[1]), int(found[2])


async def _exit_code(process: Process, timeout: float) -> int:
    return await asyncio.wait_for(process.wait(), timeout)


async def test_the_next_epoch_takes_the_port_and_the_parent_drains_out_keeping_counters(
    tmp_path: Path,
) -> None:
    async with demo_upstreams(1) as (upstream,), _epochs(tmp_path) as epochs:
        config = bootstrap(
            [http_listener(routes=routes_to("backend"))], [cluster("backend", [upstream.port])]
        )
        parent, parent_lines = await epochs.first(config)
        port, admin = epochs.ports["http"], epochs.ports["admin"]
        for _ in range(5):
            assert (await get_on_new_connection(port)).status_code == 200
        async with httpx.AsyncClient() as client:
            before = (await client.get(f"http://127.0.0.1:{admin}/server_info")).json()
        assert before["pid"] == parent.pid

        child, child_lines = await epochs.next(config, "--drain-time-s", "5")
        assert await _exit_code(parent, 10) == 0
        await parent_lines.wait_for("drained in")
        assert f"listener http on 127.0.0.1:{port} (inherited)" in child_lines.text
        for _ in range(3):
            assert (await get_on_new_connection(port)).status_code == 200
        await child_lines.wait_for("epoch 0 has exited; its counters are in")
        stats = await admin_stats(admin)
        assert stats["http.http.downstream_rq_total"] == 8, stats
        assert stats["cluster.backend.upstream_rq_total"] == 8, stats
        assert stats["server.hot_restart_epoch"] == 1
        assert stats["http.http.downstream_cx_active"] == 0  # a gauge is the child's own
        async with httpx.AsyncClient() as client:
            info = (await client.get(f"http://127.0.0.1:{admin}/server_info")).json()
        assert info["pid"] == child.pid and info["state"] == "LIVE"
        assert int(info["uptime_all_epochs"][:-1]) >= int(info["uptime_current_epoch"][:-1])
        began, since_start = _handover_ms(child_lines)
        print(f"handover: {began} ms from the first message, {since_start} ms from exec")
        assert began < 1000


async def test_no_connection_fails_across_a_hot_restart_under_load(tmp_path: Path) -> None:
    async with demo_upstreams(1) as (upstream,), _epochs(tmp_path) as epochs:
        config = bootstrap(
            [http_listener(routes=routes_to("backend"))], [cluster("backend", [upstream.port])]
        )
        parent, _ = await epochs.first(config)
        port, admin = epochs.ports["http"], epochs.ports["admin"]
        wrk = await asyncio.create_subprocess_exec(
            "wrk", "-t1", "-c8", "-d5s", "--latency", f"http://127.0.0.1:{port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stop = asyncio.Event()
        failures: list[str] = []
        done = 0

        async def new_connections() -> None:
            nonlocal done
            while not stop.is_set():
                try:
                    response = await get_on_new_connection(port)
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc!r}")
                    continue
                if response.status_code != 200:
                    failures.append(f"status {response.status_code}")
                done += 1

        loop_task = asyncio.create_task(new_connections())
        await asyncio.sleep(1.5)
        await epochs.next(config, "--drain-time-s", "5")
        assert await _exit_code(parent, 10) == 0  # drained out while the load runs
        out, err = await wrk.communicate()
        stop.set()
        await loop_task
        report = out.decode()
        assert wrk.returncode == 0, err.decode()
        assert "Socket errors" not in report, report  # connect, read, write, timeout: none
        assert "Non-2xx" not in report, report
        assert failures == [], failures[:5]
        wrk_total = int(re.search(r"(\d+) requests in", report)[1])  # type: ignore[index]
        assert wrk_total > 0 and done > 0
        stats = await admin_stats(admin)
        # Both epochs' requests, each counted once (wrk leaves up to -c requests unanswered).
        total = stats["http.http.downstream_rq_total"]
        assert wrk_total + done <= total <= wrk_total + done + 8, (total, wrk_total, done)
        assert stats["http.http.downstream_rq_2xx"] == total


async def test_the_child_serves_its_own_config(tmp_path: Path) -> None:
    async with _epochs(tmp_path) as epochs:
        config = bootstrap([http_listener(routes=direct_routes("epoch 0"))], [])
        parent, _ = await epochs.first(config)
        port = epochs.ports["http"]
        assert (await get_on_new_connection(port)).text == "epoch 0"

        changed = json.loads(json.dumps(config))
        set_routes(changed, direct_routes("epoch 1"))
        added = http_listener(routes=direct_routes("added"), name="added")
        added["address"]["socket_address"]["port_value"] = added_port = free_port()
        changed["static_resources"]["listeners"].append(added)
        _, child_lines = await epochs.next(changed, "--drain-time-s", "5")
        assert await _exit_code(parent, 10) == 0
        assert (await get_on_new_connection(port)).text == "epoch 1"
        assert (await get_on_new_connection(added_port)).text == "added"  # bound by the child
        assert any(
            line.endswith(f"listener added on 127.0.0.1:{added_port}") for line in child_lines.lines
        )
        assert "took 2 sockets from epoch 0" in child_lines.text  # the http listener and admin


async def test_a_request_open_on_the_parent_finishes_during_its_drain(tmp_path: Path) -> None:
    async with demo_upstreams(1) as (upstream,), _epochs(tmp_path) as epochs:
        config = bootstrap(
            [http_listener(routes=routes_to("backend"))], [cluster("backend", [upstream.port])]
        )
        parent, parent_lines = await epochs.first(config)
        port, admin = epochs.ports["http"], epochs.ports["admin"]
        slow = asyncio.create_task(get_on_new_connection(port, "/delay/3000"))
        await asyncio.sleep(0.3)  # on the parent's connection, before the child starts
        _, child_lines = await epochs.next(config, "--drain-time-s", "20")
        assert parent.returncode is None  # still serving the slow request
        response = await slow
        finished = time.monotonic()
        assert response.status_code == 200
        assert await _exit_code(parent, 10) == 0
        assert time.monotonic() - finished < 2
        await parent_lines.wait_for("1 connection finished, 0 closed at the drain timeout")
        await child_lines.wait_for("epoch 0 has exited; its counters are in")
        stats = await admin_stats(admin, "cluster.backend.upstream_rq")
        assert stats["cluster.backend.upstream_rq_2xx"] == 1, stats  # in the final stats


async def test_parent_shutdown_time_ends_a_drain_that_would_last_longer(tmp_path: Path) -> None:
    async with demo_upstreams(1) as (upstream,), _epochs(tmp_path) as epochs:
        config = bootstrap(
            [http_listener(routes=routes_to("backend"))], [cluster("backend", [upstream.port])]
        )
        parent, parent_lines = await epochs.first(config)
        slow = asyncio.create_task(get_on_new_connection(epochs.ports["http"], "/delay/30000"))
        await asyncio.sleep(0.3)
        await epochs.next(config, "--drain-time-s", "60", "--parent-shutdown-time-s", "1")
        started = time.monotonic()
        assert await _exit_code(parent, 10) == 0
        assert time.monotonic() - started < 3
        await parent_lines.wait_for("0 connections finished, 1 closed at the drain timeout")
        try:
            await slow
            raise AssertionError("the request outlived --parent-shutdown-time-s")
        except httpx.HTTPError:
            pass


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One HTTP/1.1 request on an open connection; the status of its response."""
    writer.write(b"GET / HTTP/1.1\r\nHost: hot\r\n\r\n")
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    length = next(
        int(line.split(":", 1)[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length:")
    )
    await reader.readexactly(length)
    return int(head.split()[1])


async def test_a_tcp_proxy_connection_runs_on_through_the_parent_until_it_closes(
    tmp_path: Path,
) -> None:
    async with demo_upstreams(1) as (upstream,), _epochs(tmp_path) as epochs:
        config = bootstrap([tcp_listener("backend")], [cluster("backend", [upstream.port])])
        parent, parent_lines = await epochs.first(config)
        port, admin = epochs.ports["tcp"], epochs.ports["admin"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _exchange(reader, writer) == 200
        _, child_lines = await epochs.next(config, "--drain-time-s", "20")
        await asyncio.sleep(0.5)
        assert await _exchange(reader, writer) == 200  # the parent still carries this stream
        assert parent.returncode is None
        fresh = await asyncio.open_connection("127.0.0.1", port)  # accepted by the child
        assert await _exchange(*fresh) == 200
        fresh[1].close()
        writer.close()
        assert await _exit_code(parent, 10) == 0
        await parent_lines.wait_for("1 connection finished, 0 closed at the drain timeout")
        await child_lines.wait_for("epoch 0 has exited; its counters are in")
        # start_proxy_process's readiness probe, the parent's stream, the child's one.
        assert (await admin_stats(admin))["tcp.tcp.downstream_cx_total"] == 3


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remora", "proxy", *args], capture_output=True, text=True, timeout=60
    )


async def test_a_missing_or_skipped_parent_and_a_taken_epoch_exit_1_with_one_line(
    tmp_path: Path,
) -> None:
    async with _epochs(tmp_path) as epochs:
        config = bootstrap([http_listener(routes=direct_routes("up"))], [])
        await epochs.first(config)
        path = str(tmp_path / "bootstrap.json")
        lonely = unique_base_id()
        cases = {
            "nothing at epoch 0": (["--base-id", lonely, "--restart-epoch", "1"],
                                   "no remora proxy runs at epoch 0 with --base-id " + lonely),
            "an epoch skipped": (["--base-id", epochs.base_id, "--restart-epoch", "2"],
                                 "no remora proxy runs at epoch 1"),
            "epoch 0 twice": (["--base-id", epochs.base_id],
                              f"@remora_hot_restart_{epochs.base_id}_0 is in use"),
        }  # fmt: skip
        for what, (flags, message) in cases.items():
            result = await asyncio.to_thread(_run, "-c", path, *flags)
            assert result.returncode == 1, (what, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (what, result.stderr)
            assert message in lines[0], (what, lines[0])
        # A bootstrap that does not compile is refused before the running epoch is asked.
        typo = tmp_path / "typo.json"
        typo.write_text(json.dumps({**config, "statc_resources": {}}))
        result = await asyncio.to_thread(
            _run, "-c", str(typo), "--base-id", epochs.base_id, "--restart-epoch", "1"
        )
        assert result.returncode == 1 and "unknown field 'statc_resources'" in result.stderr
        # The running epoch was not disturbed by any of them.
        assert (await get_on_new_connection(epochs.ports["http"])).text == "up"
        assert not any("hot restart" in line for line in epochs.processes[0][1].lines)


async def test_a_parent_speaking_another_protocol_version_is_refused(tmp_path: Path) -> None:
    """The child checks the parent's hello before asking it for anything."""
    base_id = int(unique_base_id())
    asked: list[str] = []

    async def old_parent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        asked.append(json.loads(await reader.readexactly(length))["type"])
        writer.write(encode(Hello(epoch=0, pid=os.getpid(), version=VERSION + 1)))
        await writer.drain()
        more = await reader.read(100)  # EOF: the child hung up instead of asking on
        if more:
            asked.append(more.decode(errors="replace"))
        writer.close()

    server = await asyncio.start_unix_server(old_parent, path=socket_name(base_id, 0))
    async with server:
        path = tmp_path / "b.json"
        path.write_text(json.dumps(bootstrap([http_listener(routes=direct_routes("x"))], [])))
        result = await asyncio.to_thread(
            _run, "-c", str(path), "--base-id", str(base_id), "--restart-epoch", "1"
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"error: @remora_hot_restart_{base_id}_0 answered as epoch 0 speaking hot restart "
        f"version {VERSION + 1}; this is epoch 1, version {VERSION}"
    )
    assert asked == ["hello"]  # nothing more was asked of it


def test_bad_hot_restart_flags_are_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bootstrap([http_listener(routes=direct_routes("x"))], [])))
    for flags, message in (
        (["--restart-epoch", "-1"], "-1 is negative"),
        (["--restart-epoch", "one"], "'one' is not an integer"),
        (["--restart-epoch", "1.5"], "'1.5' is not an integer"),
        (["--base-id", "-2"], "-2 is negative"),
        (["--drain-time-s", "soon"], "'soon' is not an integer"),
    ):
        result = _run("-c", str(path), *flags)
        assert result.returncode == 2, (flags, result.stderr)
        assert f"argument {flags[0]}: {message}" in result.stderr, result.stderr
    shown = _run("--help").stdout
    for flag in ("--restart-epoch", "--base-id", "--drain-time-s", "--parent-shutdown-time-s"):
        assert flag in shown
    assert "@remora_hot_restart_<base-id>_<N-1>" in shown


async def test_disable_hot_restart_runs_beside_a_proxy_of_the_same_base_id(tmp_path: Path) -> None:
    async with _epochs(tmp_path) as epochs:
        await epochs.first(bootstrap([http_listener(routes=direct_routes("first"))], []))
        beside_dir = tmp_path / "beside"
        beside_dir.mkdir()
        config = bootstrap([http_listener(routes=direct_routes("beside"))], [])
        beside, ports = await start_proxy_process(
            config, beside_dir, "info", "--base-id", epochs.base_id, "--disable-hot-restart"
        )
        lines = StderrLines(beside)
        try:
            assert (await get_on_new_connection(ports["http"])).text == "beside"
            assert (await get_on_new_connection(epochs.ports["http"])).text == "first"
        finally:
            beside.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(beside.wait(), 10) == 0
            await lines.close()
    result = _run("-c", str(tmp_path / "bootstrap.json"), "--disable-hot-restart",
                  "--restart-epoch", "1")  # fmt: skip
    assert result.returncode == 2 and "needs hot restart" in result.stderr


async def test_another_user_cannot_take_the_sockets_over(tmp_path: Path) -> None:
    from tests.conftest import require_privileged

    require_privileged("switching to another uid needs root")
    async with _epochs(tmp_path) as epochs:
        _process, lines = await epochs.first(
            bootstrap([http_listener(routes=direct_routes("a"))], [])
        )
        name = socket_name(int(epochs.base_id), 0)
        probe = (
            "import os, socket\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({name!r})\n"
            "try:\n"
            "    s.sendall(b'\\0\\0\\0\\2{}')\n"
            "    print('answered' if s.recv(100) else 'closed')\n"
            "except (ConnectionResetError, BrokenPipeError):\n"
            "    print('closed')\n"
        )
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.stdout.strip() == "closed", (done.stdout, done.stderr)
        await lines.wait_for("refused a connection from uid 65534")
        assert (await get_on_new_connection(epochs.ports["http"])).text == "a"
