"""Runs `remora proxy` as a real separate process, for tests about signals and memory."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def set_ports(config: dict[str, Any]) -> dict[str, int]:
    """Give every listener (and the admin) a concrete free port; returns name -> port."""
    ports: dict[str, int] = {}
    for listener in config["static_resources"]["listeners"]:
        port = free_port()
        listener["address"]["socket_address"]["port_value"] = port
        ports[listener["name"]] = port
    if "admin" in config:
        port = free_port()
        config["admin"]["address"]["socket_address"]["port_value"] = port
        ports["admin"] = port
    return ports


def bootstrap_path(tmp_path: Path) -> Path:
    """Where `start_proxy_process` writes the bootstrap (a reload test rewrites it)."""
    return tmp_path / "bootstrap.json"


def unique_base_id() -> str:
    """A `--base-id` of its own. Epoch 0 claims `@remora_hot_restart_<base id>_0` machine-wide,
    so proxies of concurrent test runs (or one still exiting) must not share one."""
    return str(random.randrange(1, 2**31))


async def spawn_proxy(
    path: Path, log_level: str = "warning", *extra: str
) -> asyncio.subprocess.Process:
    """`remora proxy -c path`, started and not waited for (a hot restart's child finds its
    ports already answering: its parent's)."""
    if "--base-id" not in extra:
        extra = (*extra, "--base-id", unique_base_id())
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remora",
        "proxy",
        "--config",
        str(path),
        "--log-level",
        log_level,
        *extra,
        stderr=asyncio.subprocess.PIPE,
    )


async def start_proxy_process(
    config: dict[str, Any], tmp_path: Path, log_level: str = "warning", *extra: str
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    ports = set_ports(config)
    path = bootstrap_path(tmp_path)
    path.write_text(json.dumps(config))
    process = await spawn_proxy(path, log_level, *extra)
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", next(iter(ports.values())))
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return process, ports


@asynccontextmanager
async def proxy_process(
    config: dict[str, Any], tmp_path: Path, *extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, int], StderrLines]]:
    """A proxy process at log level info that must stay alive for the whole block and log no
    traceback; SIGTERM at the end."""
    process, ports = await start_proxy_process(config, tmp_path, "info", *extra)
    lines = StderrLines(process)
    try:
        yield process, ports, lines
        assert process.returncode is None, lines.text
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)
        await lines.close()
    assert "Traceback" not in lines.text, lines.text


async def get_on_new_connection(port: int, path: str = "/") -> httpx.Response:
    """A request on a new connection (a kept-alive one keeps the config it was accepted with)."""
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{port}{path}")


async def admin_stats(admin_port: int, prefix: str = "") -> dict[str, int]:
    """/stats as name -> value, the counters and gauges whose names start with `prefix`."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{admin_port}/stats")).text
    return {
        name: int(value)
        for name, _, value in (line.partition(": ") for line in text.splitlines())
        if name.startswith(prefix) and value.lstrip("-").isdigit()
    }


class StderrLines:
    """A process's stderr read as it comes, so a test can wait for a line while it runs (and
    the pipe never fills and stalls the process)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(process.stderr))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, fragment: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """The lines containing `fragment`, once there are `count` of them."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [line for line in self.lines if fragment in line]
                    if len(found) >= count:
                        return found
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {count} x {fragment!r} in:\n{self.text}") from None

    async def close(self) -> None:
        await asyncio.wait_for(self._task, 10)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


__all__ = ["os", "peak_rss_mib", "rss_mib", "start_proxy_process"]
