"""The proxy as a process: SIGTERM drains in-flight requests, /quitquitquit exits cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import httpx

from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener
from tests.proxy.procs import start_proxy_process


async def test_sigterm_drains_in_flight_requests_then_exits_zero(tmp_path: Path) -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener(drain_timeout="5s")], [cluster("backend", [ups[0].port])])
        process, ports = await start_proxy_process(config, tmp_path, log_level="info")
        url = f"http://127.0.0.1:{ports['http']}"
        async with httpx.AsyncClient(base_url=url) as client:
            in_flight = asyncio.create_task(client.get("/delay/800"))
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            response = await in_flight
            assert response.status_code == 200
            assert response.headers.get("connection") == "close"
        started = time.monotonic()
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert time.monotonic() - started < 5
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert "SIGTERM: shutting down" in log
        assert "draining: listeners closed, 1 connection open, waiting up to 5.0 s" in log
        assert "1 connection finished, 0 closed at the drain timeout" in log
        try:
            await asyncio.open_connection("127.0.0.1", ports["http"])
            raise AssertionError("the listener should be closed")
        except OSError:
            pass


async def test_quitquitquit_and_healthcheck_fail(tmp_path: Path) -> None:
    async with demo_upstreams(1) as ups:
        config = bootstrap([http_listener()], [cluster("backend", [ups[0].port])])
        process, ports = await start_proxy_process(config, tmp_path, log_level="info")
        admin = f"http://127.0.0.1:{ports['admin']}"
        async with httpx.AsyncClient(base_url=admin) as client:
            assert (await client.get("/ready")).status_code == 200
            assert (await client.post("/healthcheck/fail")).status_code == 200
            assert (await client.get("/ready")).status_code == 503
            assert (await client.post("/healthcheck/ok")).status_code == 200
            assert (await client.get("/ready")).status_code == 200
            await client.post("/quitquitquit")
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert "/quitquitquit: shutting down" in log and "drained in" in log


async def test_an_empty_bootstrap_warns_that_nothing_is_proxied(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text(
        "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n"
    )
    (tmp_path / "nothing.yaml").write_text("{}\n")
    for name, extra in (("empty.yaml", " (only the admin is served)"), ("nothing.yaml", "")):
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remora", "proxy", "--validate", "-c", str(tmp_path / name),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, err = await done.communicate()
        assert done.returncode == 0
        expected = f"has no listeners and no dynamic_resources: nothing will be proxied{extra}"
        assert expected in err.decode()
