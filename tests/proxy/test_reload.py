"""`remora proxy` reloads its bootstrap on SIGHUP and, with --watch, on every change to the file.

Each test runs the proxy as a real process, rewrites its file, and looks at what a real client
gets: only what changed is applied, a bad file leaves the running config serving, and requests
under load see no failure across reloads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    direct_routes,
    http_listener,
    routes_to,
    set_routes,
)
from tests.proxy.procs import (
    StderrLines,
    admin_stats,
    bootstrap_path,
    free_port,
    get_on_new_connection,
    proxy_process,
)


def _write(tmp_path: Path, config: dict[str, Any] | str) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    bootstrap_path(tmp_path).write_text(text)


def _ended(lines: StderrLines) -> list[str]:
    """The lines that end a SIGHUP reload: applied (`reload (SIGHUP) of FILE: ...`) or refused."""
    ends = ("reload (SIGHUP) of ", "reload (SIGHUP) refused")
    return [line for line in lines.lines if any(end in line for end in ends)]


async def _reload(process: asyncio.subprocess.Process, lines: StderrLines) -> str:
    """SIGHUP, and the log line that says how the reload ended."""
    before = len(_ended(lines))
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(ended := _ended(lines)) == before:
        assert time.monotonic() < deadline, f"no reload logged:\n{lines.text}"
        await asyncio.sleep(0.02)
    return ended[before]


async def _stats(admin_port: int) -> dict[str, int]:
    return await admin_stats(admin_port, "server.reload.")


async def test_sighup_changes_routes_and_clusters_and_logs_what_changed(tmp_path: Path) -> None:
    async with demo_upstreams(2) as (a, b):
        config = bootstrap(
            [http_listener(routes=routes_to("a"))], [cluster("a", [a.port]), cluster("b", [b.port])]
        )
        async with proxy_process(config, tmp_path) as (process, ports, lines):
            assert (await get_on_new_connection(ports["http"])).headers["x-upstream-name"] == "up-0"

            set_routes(config, routes_to("b"))  # a route now sends to another upstream
            _write(tmp_path, config)
            assert "listeners changed http" in await _reload(process, lines)
            assert (await get_on_new_connection(ports["http"])).headers["x-upstream-name"] == "up-1"

            set_routes(config, direct_routes("direct"))  # and now answers itself
            _write(tmp_path, config)
            await _reload(process, lines)
            response = await get_on_new_connection(ports["http"])
            assert response.status_code == 200 and response.text == "direct"

            # A changed cluster (same name, another endpoint), an added and a removed one.
            set_routes(config, routes_to("a"))
            config["static_resources"]["clusters"] = [
                cluster("a", [b.port]),
                cluster("c", [a.port]),
            ]
            _write(tmp_path, config)
            line = await _reload(process, lines)
            assert "listeners changed http | clusters added c; removed b; changed a" in line
            assert (await get_on_new_connection(ports["http"])).headers["x-upstream-name"] == "up-1"

            # The same file again: nothing to do, and it says so.
            assert (await _reload(process, lines)).endswith(": no change")
            stats = await _stats(ports["admin"])
            assert stats["server.reload.update_attempt"] == 4
            assert stats["server.reload.update_success"] == 4
            assert stats["server.reload.update_rejected"] == 0
            assert stats["server.reload.update_time"] > 0


async def test_a_bad_file_is_refused_with_every_error_and_the_old_config_serves(
    tmp_path: Path,
) -> None:
    config = bootstrap([http_listener(routes=direct_routes("v1"))], [])
    async with proxy_process(config, tmp_path) as (process, ports, lines):
        typo = json.loads(json.dumps(config))
        typo["static_resources"]["listeners"][0]["adress"] = {}
        typo["static_resources"]["clusters"] = [{"name": "c", "conect_timeout": "1s"}]
        bad: dict[str, str] = {
            "field typos": json.dumps(typo),
            "a YAML syntax error": "static_resources: {listeners: [\n",
            "an empty file": "",
        }
        for what, text in bad.items():
            _write(tmp_path, text)
            assert "refused, the running config is kept" in await _reload(process, lines), what
            response = await get_on_new_connection(ports["http"])
            assert response.text == "v1", what
        # Every error of the typo file, each with its field path, as at start-up.
        assert any(
            "static_resources.listeners[0].adress: unknown field 'adress'" in line
            for line in lines.lines
        )
        assert any("static_resources.clusters[0].conect_timeout" in line for line in lines.lines)
        assert any("invalid YAML" in line for line in lines.lines)
        assert any("the file holds no configuration" in line for line in lines.lines)

        bootstrap_path(tmp_path).unlink()  # a deleted file
        assert "refused" in await _reload(process, lines)
        assert any("cannot read" in line and "No such file" in line for line in lines.lines)
        assert (await get_on_new_connection(ports["http"])).text == "v1"

        set_routes(config, direct_routes("v2"))  # fixed: the next reload applies
        _write(tmp_path, config)
        assert "listeners changed http" in await _reload(process, lines)
        assert (await get_on_new_connection(ports["http"])).text == "v2"
        stats = await _stats(ports["admin"])
        assert stats["server.reload.update_rejected"] == 4
        assert stats["server.reload.update_success"] == 1


async def test_listeners_added_and_removed_and_the_admin_needs_a_restart(tmp_path: Path) -> None:
    config = bootstrap(
        [
            http_listener(routes=direct_routes("kept")),
            http_listener(routes=direct_routes("old"), name="old"),
        ],
        [],
    )
    async with proxy_process(config, tmp_path) as (process, ports, lines):
        assert (await get_on_new_connection(ports["old"])).text == "old"
        new_port, other_admin = free_port(), free_port()
        new = http_listener(routes=direct_routes("new"), name="new")
        new["address"]["socket_address"]["port_value"] = new_port
        listeners = config["static_resources"]["listeners"]
        listeners[1] = new
        config["admin"]["address"]["socket_address"]["port_value"] = other_admin
        _write(tmp_path, config)
        line = await _reload(process, lines)
        assert "listeners added new; removed old" in line, line
        (restart,) = await lines.wait_for("needs a restart")
        assert f"admin (127.0.0.1:{ports['admin']} -> 127.0.0.1:{other_admin})" in restart

        assert (await get_on_new_connection(new_port)).text == "new"
        assert (await get_on_new_connection(ports["http"])).text == "kept"
        try:
            await get_on_new_connection(ports["old"])
            raise AssertionError("the removed listener still accepts")
        except httpx.ConnectError:
            pass
        # The admin stays where it was, and /config_dump shows the admin that runs.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['admin']}") as admin:
            listed = (await admin.get("/listeners")).text
            assert "new::" in listed and "old::" not in listed
            dump = (await admin.get("/config_dump")).json()["configs"][0]["bootstrap"]
            assert dump["admin"]["address"]["socket_address"]["port_value"] == ports["admin"]
            assert [ls["name"] for ls in dump["static_resources"]["listeners"]] == ["http", "new"]
        assert (await _stats(ports["admin"]))["server.reload.restart_required"] == 1


async def test_a_listener_that_cannot_bind_leaves_everything_as_it_was(tmp_path: Path) -> None:
    config = bootstrap([http_listener(routes=direct_routes("v1"))], [])
    async with proxy_process(config, tmp_path) as (process, ports, lines):
        taken = _held_port()
        try:
            set_routes(config, direct_routes("v2"))
            blocked = http_listener(routes=direct_routes("x"), name="blocked")
            blocked["address"]["socket_address"]["port_value"] = taken.getsockname()[1]
            config["static_resources"]["listeners"].append(blocked)
            _write(tmp_path, config)
            line = await _reload(process, lines)
            assert "refused" in line and "listener 'blocked' cannot bind" in line, line
            assert (
                await get_on_new_connection(ports["http"])
            ).text == "v1"  # the route change is not half-applied
        finally:
            taken.close()


def _held_port() -> socket.socket:
    """A port another process (this test) listens on, so the proxy cannot bind it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def _until_body(port: int, body: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (await get_on_new_connection(port)).text != body:
        assert time.monotonic() < deadline, f"never answered {body!r}"
        await asyncio.sleep(0.05)


async def test_watch_applies_edits_atomic_replaces_and_symlink_swaps(tmp_path: Path) -> None:
    config = bootstrap([http_listener(routes=direct_routes("v1"))], [])
    async with proxy_process(config, tmp_path, "--watch") as (_process, ports, lines):
        await lines.wait_for("watching")
        await asyncio.sleep(0.3)  # the watcher starts on its first iteration

        set_routes(config, direct_routes("edited"))
        _write(tmp_path, config)  # rewritten in place
        await _until_body(ports["http"], "edited")

        set_routes(config, direct_routes("renamed"))
        staging = tmp_path / ".bootstrap.json.tmp"
        staging.write_text(json.dumps(config))
        os.replace(staging, bootstrap_path(tmp_path))  # as editors and config managers save
        await _until_body(ports["http"], "renamed")

        _write(tmp_path, "static_resources: {listeners: [\n")  # broken: logged, still serving
        await lines.wait_for("refused, the running config is kept")
        assert (await get_on_new_connection(ports["http"])).text == "renamed"

        set_routes(config, direct_routes("again"))
        _write(tmp_path, config)
        await _until_body(ports["http"], "again")
        assert len(await lines.wait_for("reload (file changed) of")) == 3

        # Kubernetes mounts a ConfigMap as FILE -> ..data/FILE and swaps the `..data` symlink.
        for version in ("k1", "k2"):
            (tmp_path / version).mkdir()
            set_routes(config, direct_routes(version))
            (tmp_path / version / "bootstrap.json").write_text(json.dumps(config))
        (tmp_path / "..data").symlink_to("k1")
        os.replace(_symlink(tmp_path, "..data/bootstrap.json"), bootstrap_path(tmp_path))
        await _until_body(ports["http"], "k1")
        os.replace(_symlink(tmp_path, "k2"), tmp_path / "..data")
        await _until_body(ports["http"], "k2")


def _symlink(directory: Path, target: str) -> Path:
    link = directory / ".staging-link"
    link.symlink_to(target)
    return link


async def test_no_request_fails_across_reloads_under_load(tmp_path: Path) -> None:
    async with demo_upstreams(2) as (a, b):
        config = bootstrap(
            [http_listener(routes=routes_to("a"))], [cluster("a", [a.port]), cluster("b", [b.port])]
        )
        async with proxy_process(config, tmp_path) as (process, ports, lines):
            url = f"http://127.0.0.1:{ports['http']}/"
            stop = asyncio.Event()
            failures: list[str] = []
            samples: list[tuple[float, str]] = []  # new connections: (started at, upstream)
            answered: list[float] = []  # kept-alive connections: when each response came

            async def keep_alive_client() -> int:
                done = 0
                async with httpx.AsyncClient(timeout=5) as client:
                    while not stop.is_set():
                        try:
                            response = await client.get(url)
                        except httpx.HTTPError as exc:
                            failures.append(f"{type(exc).__name__}: {exc}")
                            continue
                        if response.status_code != 200:
                            failures.append(f"{response.status_code} {response.text[:80]}")
                        answered.append(time.monotonic())
                        done += 1
                return done

            async def new_connection_client() -> int:
                done = 0
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        response = await get_on_new_connection(ports["http"])
                    except httpx.HTTPError as exc:
                        failures.append(f"new connection: {type(exc).__name__}: {exc}")
                        continue
                    if response.status_code != 200:
                        failures.append(f"new connection: {response.status_code}")
                    samples.append((started, response.headers.get("x-upstream-name", "?")))
                    done += 1
                return done

            clients = [asyncio.create_task(keep_alive_client()) for _ in range(4)]
            clients += [asyncio.create_task(new_connection_client()) for _ in range(2)]
            await asyncio.sleep(0.5)
            windows: list[tuple[float, float, str]] = []  # between reloads: where routes go
            for i in range(6):
                upstream = "b" if i % 2 == 0 else "a"
                set_routes(config, routes_to(upstream))
                _write(tmp_path, config)
                assert "listeners changed http" in await _reload(process, lines)
                applied = time.monotonic()
                await asyncio.sleep(0.4)
                windows.append((applied, time.monotonic(), "up-1" if upstream == "b" else "up-0"))
            stop.set()
            counts = await asyncio.gather(*clients)
            assert failures == [], failures[:10]
            assert min(counts) > 0, counts
            # Traffic ran between every two reloads (so across each one), and a connection
            # opened after a reload was logged went where that reload routed it.
            for start, end, expected in windows:
                assert any(start <= at < end for at in answered), (start, end)
                got = {name for at, name in samples if start <= at < end - 0.05}
                assert got == {expected}, (start, end, expected, got)


def test_help_describes_reloads_and_watch_refuses_validate(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "remora", "proxy"]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60)
    assert (
        "SIGHUP reloads the file" in shown.stdout
        and "need a restart" in shown.stdout
        and "--watch" in shown.stdout
    )
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bootstrap([http_listener(routes=direct_routes("x"))], [])))
    both = subprocess.run(
        [*run, "-c", str(path), "--validate", "--watch"], capture_output=True, text=True, timeout=60
    )
    assert both.returncode == 2
    assert "--watch: not allowed with argument --validate" in both.stderr
