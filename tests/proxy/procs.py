"""Runs `remora proxy` as a real separate process, for tests about signals and memory."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any


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


async def start_proxy_process(
    config: dict[str, Any], tmp_path: Path, log_level: str = "warning"
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    ports = set_ports(config)
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remora",
        "proxy",
        "--config",
        str(path),
        "--log-level",
        log_level,
        stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", next(iter(ports.values())))
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return process, ports


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
