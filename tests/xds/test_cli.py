"""`remora control-plane` as a process: serves the directory and shows it on the admin port."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_control_plane_command_serves_and_reports(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(
        "services:\n  web:\n    endpoints: [{address: 127.0.0.1, port: 9000}]\n"
    )
    xds_port, admin_port = _free_port(), _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remora", "control-plane", "--config-dir", str(tmp_path),
        "--xds-address", f"127.0.0.1:{xds_port}", "--admin-address", f"127.0.0.1:{admin_port}",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as http:
            deadline = time.monotonic() + 10
            while True:
                try:
                    snapshots = (await http.get("/snapshots")).json()
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert set(snapshots["snapshots"]) == {"sidecar", "proxyless"}
            assert snapshots["source_error"] == ""
            (tmp_path / "mesh.yaml").write_text("services:\n  web:\n    endpoints: 3\n")
            deadline = time.monotonic() + 3
            while not (await http.get("/snapshots")).json()["source_error"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            error = (await http.get("/snapshots")).json()["source_error"]
            assert "mesh.yaml: services.web.endpoints" in error
            metrics = (await http.get("/metrics")).text
            assert "remora_xds_source_errors_total 1" in metrics
            assert (await http.get("/nacks")).json()["total"] == 0
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    assert process.returncode == 0
