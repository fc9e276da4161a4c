"""`remora control-plane` as a process: serves the directory and shows it on the admin port."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from remora.xds.types import CLUSTER
from tests.xds.gitrepo import Repo


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


async def _get_json(http: httpx.AsyncClient, path: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return (await http.get(path)).json()
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def _until_json(
    http: httpx.AsyncClient, path: str, check: Callable[[Any], bool], timeout: float = 5.0
) -> Any:
    deadline = time.monotonic() + timeout
    while not check(body := await _get_json(http, path)):
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)
    return body


async def test_control_plane_serves_a_git_branch_and_takes_registrations(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    mesh = "services:\n  web: {}\n"
    first = repo.commit({"mesh.yaml": mesh}, "web, endpoints registered")
    xds_port, admin_port = _free_port(), _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remora", "control-plane", "--git-repo", str(repo.path),
        "--git-branch", "main", "--git-poll", "0.05", "--xds-address", f"127.0.0.1:{xds_port}",
        "--admin-address", f"127.0.0.1:{admin_port}",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as http:
            source = await _get_json(http, "/source")
            assert source["kind"] == "git" and source["serving"]["sha"] == first
            assert source["serving"]["author"] == "Alice Admin <alice@example.com>"
            label = f"main@{first[:12]}"
            snapshots = (await http.get("/snapshots")).json()["snapshots"]
            assert snapshots["sidecar"]["label"] == label

            bad = repo.commit({"mesh.yaml": "services:\n  web: {listen_port: -1}\n"}, "bad")
            source = await _until_json(http, "/source", lambda s: s["last_error"] != "")
            assert bad[:12] in source["last_error"]
            assert "mesh.yaml: services.web.listen_port" in source["last_error"]
            assert source["serving"]["sha"] == first
            assert source["history"][0]["status"] == "rejected"

            body = {"service": "web", "address": "127.0.0.1", "port": 9009, "ttl": 30}
            assert (await http.post("/registrations", json=body)).status_code == 200
            snapshots = (await http.get("/snapshots")).json()["snapshots"]
            assert snapshots["sidecar"]["label"] == label  # still the last good commit

            # Rollback: check the older commit out onto the branch; registrations persist.
            repo.commit({"mesh.yaml": mesh + "  api: {}\n"}, "add api")
            await _until_json(
                http, "/snapshots",
                lambda s: "api" in s["snapshots"]["sidecar"]["resources"][CLUSTER],
            )  # fmt: skip
            repo.git("checkout", "-q", "-B", "main", first)
            snapshots = await _until_json(
                http, "/snapshots", lambda s: s["snapshots"]["sidecar"]["label"] == label
            )
            assert snapshots["snapshots"]["sidecar"]["resources"][CLUSTER] == ["web"]
            listing = (await http.get("/registrations")).json()["registrations"]
            assert [r["port"] for r in listing] == [9009]
            metrics = (await http.get("/metrics")).text
            assert "remora_xds_source_errors_total 1" in metrics
    finally:
        process.terminate()
        _out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
    log = err.decode()
    assert f"refused commit {bad[:12]} by Alice Admin <alice@example.com>" in log
    assert "registered web 127.0.0.1:9009" in log
