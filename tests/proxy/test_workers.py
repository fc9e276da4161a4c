"""`--concurrency N`: worker processes sharing the listeners, one admin summing them, signals
reaching every worker. Real processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener
from tests.proxy.procs import StderrLines, bootstrap_path, start_proxy_process


def _direct(body: str) -> dict[str, Any]:
    routes = [{"match": {"prefix": "/"},
               "direct_response": {"status": 200, "body": {"inline_string": body}}}]  # fmt: skip
    return bootstrap([http_listener(routes=routes)], [])


async def _stats(admin: int) -> dict[str, str]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{admin}/stats")).text
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


async def _workers(admin: int) -> list[int]:
    async with httpx.AsyncClient() as client:
        info = (await client.get(f"http://127.0.0.1:{admin}/server_info")).json()
    return [w["pid"] for w in info["workers"]]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


async def test_workers_share_the_listener_and_the_admin_sums_them(tmp_path: Path) -> None:
    process, ports = await start_proxy_process(
        _direct("hi"), tmp_path, "info", "--concurrency", "2"
    )
    lines = StderrLines(process)
    try:
        pids = await _workers(ports["admin"])
        assert len(set(pids)) == 2 and process.pid not in pids
        before = [_cpu_ticks(pid) for pid in pids]
        url = f"http://127.0.0.1:{ports['http']}/"
        wrk = subprocess.run(
            ["wrk", "-t2", "-c16", "-d2s", url], capture_output=True, text=True, check=True
        )
        served = int(wrk.stdout.split(" requests in ")[0].split()[-1])
        # Both workers did the work: the kernel spread wrk's 16 connections over them.
        assert all(_cpu_ticks(pid) > b + 10 for pid, b in zip(pids, before, strict=True))
        stats = await _stats(ports["admin"])
        assert int(stats["http.http.downstream_rq_total"]) >= served
        assert int(stats["http.http.downstream_cx_total"]) >= 16
        assert stats["server.concurrency"] == "2"
        assert stats["server.live"] == "1"  # a state, not summed over the workers
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{ports['admin']}/ready")).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        await lines.close()
    assert not any(_alive(pid) for pid in pids)
    assert "Traceback" not in lines.text, lines.text


async def test_sigterm_drains_every_worker_and_sighup_reloads_each(tmp_path: Path) -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        process, ports = await start_proxy_process(config, tmp_path, "info", "--concurrency", "2")
        lines = StderrLines(process)
        url = f"http://127.0.0.1:{ports['http']}"
        try:
            routes: list[dict[str, Any]] = [
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": "new"}},
                }
            ]
            hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"] = routes
            bootstrap_path(tmp_path).write_text(json.dumps(config))
            process.send_signal(signal.SIGHUP)
            await lines.wait_for("reload (SIGHUP) of", count=2)
            bodies = set()
            for _ in range(30):  # new connections: any worker may take each
                async with httpx.AsyncClient() as client:
                    bodies.add((await client.get(url + "/")).text)
            assert bodies == {"new"}

            # A request in flight when SIGTERM arrives still gets its answer.
            routes[0] = {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}
            bootstrap_path(tmp_path).write_text(json.dumps(config))
            process.send_signal(signal.SIGHUP)
            await lines.wait_for("reload (SIGHUP) of", count=4)
            async with httpx.AsyncClient(timeout=10) as client:
                slow = asyncio.create_task(client.get(url + "/delay/700"))
                await asyncio.sleep(0.2)
                process.send_signal(signal.SIGTERM)
                assert (await slow).status_code == 200
            assert await asyncio.wait_for(process.wait(), 10) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await lines.close()
        assert "Traceback" not in lines.text, lines.text


async def test_a_dead_worker_takes_the_proxy_down_with_exit_1(tmp_path: Path) -> None:
    process, ports = await start_proxy_process(
        _direct("hi"), tmp_path, "info", "--concurrency", "2"
    )
    lines = StderrLines(process)
    try:
        pids = await _workers(ports["admin"])
        subprocess.run(["kill", "-KILL", str(pids[0])], check=True)
        assert await asyncio.wait_for(process.wait(), 10) == 1
        await lines.wait_for("worker 0 (pid")
        deadline = time.monotonic() + 5
        while _alive(pids[1]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        if process.returncode is None:
            process.kill()
        await lines.close()


def test_a_taken_port_and_bad_counts_fail_clearly(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        config = _direct("hi")
        config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = (
            held.getsockname()[1]
        )
        path = tmp_path / "b.json"
        path.write_text(json.dumps(config))
        done = subprocess.run(
            [sys.executable, "-m", "remora", "proxy", "-c", str(path), "--concurrency", "2"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 1
    assert "error: listener 'http' cannot bind" in done.stderr
    assert "Traceback" not in done.stderr
    for bad in ("0", "x", "-1"):
        done = subprocess.run(
            [sys.executable, "-m", "remora", "proxy", "-c", str(path), "--concurrency", bad],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 2 and "--concurrency" in done.stderr, done.stderr


async def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    process, ports = await start_proxy_process(
        _direct("hi"), tmp_path, "info", "--concurrency", "2"
    )
    lines = StderrLines(process)
    try:
        pids = await _workers(ports["admin"])
        process.kill()  # no chance to forward anything
        await process.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker kept serving"
            await asyncio.sleep(0.05)
    finally:
        await lines.close()
