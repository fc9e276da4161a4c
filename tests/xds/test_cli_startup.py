"""`remora control-plane` start-up as a user meets it: bad sources, taken ports, `--validate`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.xds.gitrepo import Repo

GOOD = "services:\n  web:\n    endpoints: [{address: 127.0.0.1, port: 9000}]\n"
BAD = "services:\n  web:\n    endpoints: 3\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _remora(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remora", *args], capture_output=True, text=True, timeout=timeout
    )


def _clean(done: subprocess.CompletedProcess[str]) -> None:
    """Failures are one error line (plus details), never a traceback or a destructor warning."""
    assert "Traceback" not in done.stderr, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr


def _wait_listening(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


@contextmanager
def _running(directory: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "remora", "control-plane", "--config-dir", str(directory), *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


def _mesh(tmp_path: Path, text: str, name: str = "mesh") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "mesh.yaml").write_text(text)
    return directory


def test_a_second_control_plane_on_the_same_address_fails(tmp_path: Path) -> None:
    directory = _mesh(tmp_path, GOOD)
    port = _free_port()
    with _running(directory, "--xds-address", f"127.0.0.1:{port}"):
        _wait_listening(port)
        second = _remora(
            "control-plane", "--config-dir", str(directory), "--xds-address", f"127.0.0.1:{port}"
        )
    assert second.returncode == 1
    _clean(second)
    assert f"error: --xds-address: cannot bind 127.0.0.1:{port}: Address already in use" in (
        second.stderr
    )


def test_an_unresolvable_xds_address_is_one_line(tmp_path: Path) -> None:
    done = _remora(
        "control-plane", "--config-dir", str(_mesh(tmp_path, GOOD)),
        "--xds-address", "999.1.1.1:18000",
    )  # fmt: skip
    assert done.returncode == 1
    _clean(done)
    assert "error: --xds-address: cannot resolve '999.1.1.1'" in done.stderr


def test_an_admin_port_conflict_stops_the_xds_server_cleanly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin_port = taken.getsockname()[1]
        done = _remora(
            "control-plane", "--config-dir", str(_mesh(tmp_path, GOOD)),
            "--xds-address", f"127.0.0.1:{_free_port()}",
            "--admin-address", f"127.0.0.1:{admin_port}",
        )  # fmt: skip
    assert done.returncode == 1
    _clean(done)
    assert (
        f"error: --admin-address: cannot bind 127.0.0.1:{admin_port}: Address already in use"
        in (done.stderr)
    )


def test_a_directory_that_fails_its_first_load_exits_1(tmp_path: Path) -> None:
    directory = _mesh(tmp_path, BAD)
    done = _remora(
        "control-plane",
        "--config-dir",
        str(directory),
        "--xds-address",
        f"127.0.0.1:{_free_port()}",
    )
    assert done.returncode == 1
    _clean(done)
    assert f"error: cannot start: {directory}: the first load failed, nothing to serve:" in (
        done.stderr
    )
    assert "  mesh.yaml: services.web.endpoints: must be a list" in done.stderr
    assert "previous snapshot" not in done.stderr


def test_a_later_bad_change_keeps_serving_and_says_so(tmp_path: Path) -> None:
    directory = _mesh(tmp_path, GOOD)
    port, admin_port = _free_port(), _free_port()
    with _running(
        directory,
        "--xds-address",
        f"127.0.0.1:{port}",
        "--admin-address",
        f"127.0.0.1:{admin_port}",
    ) as process:
        _wait_listening(admin_port)
        deadline = time.monotonic() + 10
        # Rewritten until seen: the watch may start a moment after the admin port opens.
        while not httpx.get(f"http://127.0.0.1:{admin_port}/snapshots").json()["source_error"]:
            assert time.monotonic() < deadline
            (directory / "mesh.yaml").write_text(BAD)
            time.sleep(0.2)
        assert process.poll() is None
    assert process.stderr is not None
    log = process.stderr.read()
    assert "config rejected, still serving the previous snapshot" in log
    assert "mesh.yaml: services.web.endpoints: must be a list" in log


def test_an_empty_directory_serves_with_a_warning(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    directory.mkdir()
    (directory / "notes.txt").write_text("services: here in spirit\n")
    port = _free_port()
    with _running(directory, "--xds-address", f"127.0.0.1:{port}") as process:
        _wait_listening(port)
    assert process.stderr is not None
    log = process.stderr.read()
    assert f"{directory} has no services and no resources" in log
    assert log.count("has no services") == 1


def test_a_git_repo_that_fails_its_first_load_exits_1(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    sha = repo.commit({"mesh.yaml": BAD}, "broken from the start")
    done = _remora(
        "control-plane", "--git-repo", str(repo.path), "--xds-address", f"127.0.0.1:{_free_port()}"
    )
    assert done.returncode == 1
    _clean(done)
    assert f"(commit {sha[:12]} by Alice Admin <alice@example.com>): the first load failed" in (
        done.stderr
    )
    assert "  mesh.yaml: services.web.endpoints: must be a list" in done.stderr


def test_validate_a_directory(tmp_path: Path) -> None:
    good = _remora("control-plane", "--config-dir", str(_mesh(tmp_path, GOOD)), "--validate")
    assert good.returncode == 0, good.stderr
    assert (
        good.stdout == f"configuration '{tmp_path / 'mesh'}' OK: 1 service (web), 0 raw resources\n"
    )

    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.yaml").write_text(BAD)
    (tmp_path / "two" / "b.yaml").write_text("services:\n  api: {listen_port: -1}\n")
    bad = _remora("control-plane", "--config-dir", str(tmp_path / "two"), "--validate")
    assert bad.returncode == 1
    _clean(bad)
    lines = bad.stderr.splitlines()
    assert lines[0] == f"error: invalid configuration '{tmp_path / 'two'}':"
    assert "  a.yaml: services.web.endpoints: must be a list" in lines
    assert any(line.startswith("  b.yaml: services.api.listen_port") for line in lines)

    (tmp_path / "empty").mkdir()
    empty = _remora("control-plane", "--config-dir", str(tmp_path / "empty"), "--validate")
    assert empty.returncode == 0
    assert "warning: " in empty.stderr and "has no services and no resources" in empty.stderr


def test_validate_a_git_branch(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    repo.commit({"mesh/mesh.yaml": GOOD}, "good")
    ok = _remora("control-plane", "--git-repo", str(repo.path), "--git-path", "mesh", "--validate")
    assert ok.returncode == 0, ok.stderr
    assert "OK: 1 service (web)" in ok.stdout
    sha = repo.commit({"mesh/mesh.yaml": BAD}, "bad")
    bad = _remora("control-plane", "--git-repo", str(repo.path), "--git-path", "mesh", "--validate")
    assert bad.returncode == 1
    _clean(bad)
    assert f"at commit {sha[:12]}" in bad.stderr
    assert "  mesh.yaml: services.web.endpoints: must be a list" in bad.stderr
    missing = _remora("control-plane", "--git-repo", str(repo.path), "--git-branch", "prod",
                      "--validate")  # fmt: skip
    assert missing.returncode == 1
    assert "refs/heads/prod does not name a commit" in missing.stderr


def test_wrong_sources_are_named(tmp_path: Path) -> None:
    not_git = _remora("control-plane", "--git-repo", str(tmp_path), "--validate")
    assert not_git.returncode == 1
    assert f"error: {tmp_path}: not a git repository" in not_git.stderr
    missing = _remora("control-plane", "--config-dir", str(tmp_path / "nope"), "--validate")
    assert missing.returncode == 1
    assert f"error: --config-dir {tmp_path / 'nope'}: no such directory" in missing.stderr
    (tmp_path / "file").write_text("")
    a_file = _remora("control-plane", "--config-dir", str(tmp_path / "file"), "--validate")
    assert f"error: --config-dir {tmp_path / 'file'}: not a directory" in a_file.stderr
    no_address = _remora("control-plane", "--config-dir", str(tmp_path))
    assert no_address.returncode == 2
    assert "--xds-address is required (or use --validate)" in no_address.stderr
    for done in (not_git, missing, a_file, no_address):
        _clean(done)


def test_raw_resource_errors_are_named_by_path_not_by_protobuf(tmp_path: Path) -> None:
    directory = tmp_path / "raw"
    directory.mkdir()
    (directory / "r.yaml").write_text(
        "resources:\n"
        '- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster\n'
        "  name: extra\n  conect_timeout: 1s\n  type: STATIK\n"
        '- "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n'
    )
    (directory / "broken.yaml").write_text("services:\n  web: [\n")
    done = _remora("control-plane", "--config-dir", str(directory), "--validate")
    assert done.returncode == 1
    _clean(done)
    assert done.stderr.splitlines()[1:] == [
        "  broken.yaml:3:1: invalid YAML: expected the node content, but found '<stream end>' "
        "(while parsing a flow node)",
        "  r.yaml: resources[0].conect_timeout: unknown field 'conect_timeout' in "
        "envoy.config.cluster.v3.Cluster",
        "  r.yaml: resources[0].type: invalid value 'STATIK': expected one of STATIC, STRICT_DNS, "
        "LOGICAL_DNS, EDS, ORIGINAL_DST",
        "  r.yaml: resources[1]: not an xDS resource: @type envoy.extensions.filters.http.cors.v3."
        "Cors (a resources: file serves Cluster, ClusterLoadAssignment, Listener, "
        "RouteConfiguration, Secret)",
    ]
