"""The GitOps source against real repositories made with the git CLI in tmp_path."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from remora.xds import types
from remora.xds.cache import SnapshotCache
from remora.xds.gitsource import GitError, GitSource
from remora.xds.source import Publisher, mesh_group
from tests.xds.gitrepo import MESH, Repo


def _source(repo: Repo, branch: str = "main", subdir: str = "") -> tuple[GitSource, SnapshotCache]:
    cache = SnapshotCache(mesh_group)
    return GitSource(repo.path, branch, Publisher(cache), poll=0.05, subdir=subdir), cache


def _ports(cache: SnapshotCache) -> list[int]:
    snapshot = cache.get("sidecar")
    assert snapshot is not None
    cla = snapshot.resources(types.ENDPOINT)["web"].message
    assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
    return [e.endpoint.address.socket_address.port_value for e in cla.endpoints[0].lb_endpoints]


def test_commits_apply_with_commit_in_the_label_and_a_logged_diff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = Repo(tmp_path / "repo")
    first = repo.commit({"mesh.yaml": MESH.format(port=9001)}, "web on 9001")
    source, cache = _source(repo)
    caplog.set_level(logging.INFO, "remora.xds.git")
    assert source.sync() is True
    assert _ports(cache) == [9001]
    snapshot = cache.get("sidecar")
    assert snapshot is not None and snapshot.label == f"main@{first[:12]}"
    assert source.sync() is None  # the branch has not moved
    second = repo.commit(
        {"mesh.yaml": MESH.format(port=9002), "notes.yaml": "services: {}\n"},
        "move web to 9002",
        author="Bob Ops <bob@example.com>",
    )
    assert source.sync() is True and _ports(cache) == [9002]
    [event] = [e for e in source.history if e.commit == second]
    assert event.status == "applied" and event.author == "Bob Ops <bob@example.com>"
    assert "M mesh.yaml" in event.summary and "A notes.yaml" in event.summary
    assert "2 files changed" in event.summary
    message = next(r.getMessage() for r in caplog.records if second[:12] in r.getMessage())
    assert "Bob Ops <bob@example.com>" in message and "M mesh.yaml" in message
    assert "move web to 9002" in message


def test_bad_commit_is_refused_and_the_last_good_one_keeps_serving(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    good = repo.commit({"mesh.yaml": MESH.format(port=9001)}, "good")
    source, cache = _source(repo)
    source.sync()
    versions = cache.get("sidecar").versions()  # type: ignore[union-attr]
    bad = repo.commit({"mesh.yaml": MESH.format(port=70000)}, "oops", author="Eve <eve@x.org>")
    assert source.sync() is False
    assert cache.get("sidecar").versions() == versions  # type: ignore[union-attr]
    assert cache.get("sidecar").label == f"main@{good[:12]}"  # type: ignore[union-attr]
    assert bad[:12] in source.last_error and "Eve <eve@x.org>" in source.last_error
    assert "mesh.yaml: services.web.endpoints[0].port" in source.last_error
    assert source.history[-1].status == "rejected" and source.history[-1].commit == bad
    assert source.applied is not None and source.applied.sha == good
    assert source.sync() is None  # refused once, not re-parsed on every poll
    repo.commit({"mesh.yaml": MESH.format(port=9003)}, "fix")
    assert source.sync() is True and _ports(cache) == [9003] and source.last_error == ""


def test_rollback_by_checking_out_an_older_commit_onto_the_branch(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    old = repo.commit({"mesh.yaml": MESH.format(port=9001)}, "v1")
    source, cache = _source(repo)
    source.sync()
    old_versions = cache.get("sidecar").versions()  # type: ignore[union-attr]
    repo.commit({"mesh.yaml": MESH.format(port=9002)}, "v2")
    source.sync()
    assert _ports(cache) == [9002]
    repo.git("checkout", "-q", "-B", "main", old)
    assert source.sync() is True
    assert _ports(cache) == [9001]
    # Deterministic versions: the rolled-back config has exactly the versions it had before.
    assert cache.get("sidecar").versions() == old_versions  # type: ignore[union-attr]
    assert cache.get("sidecar").label == f"main@{old[:12]}"  # type: ignore[union-attr]


def test_following_head_sees_a_detached_checkout(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    old = repo.commit({"mesh.yaml": MESH.format(port=9001)}, "v1")
    repo.commit({"mesh.yaml": MESH.format(port=9002)}, "v2")
    source, cache = _source(repo, branch="HEAD")
    source.sync()
    assert _ports(cache) == [9002]
    repo.git("checkout", "-q", old)
    assert source.sync() is True and _ports(cache) == [9001]


def test_commit_that_changes_no_config_pushes_nothing(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    repo.commit({"mesh.yaml": MESH.format(port=9001)}, "v1")
    source, cache = _source(repo)
    source.sync()
    pushes = []
    cache.watch("sidecar", lambda: pushes.append(1))
    docs = repo.commit({"README.md": "the mesh\n"}, "docs only")
    assert source.sync() is True
    assert pushes == [] and source.history[-1].status == "unchanged"
    assert cache.get("sidecar").label == f"main@{docs[:12]}"  # type: ignore[union-attr]


def test_subdirectory_of_the_repository(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    repo.commit({"mesh/web.yaml": MESH.format(port=9001), "other.yaml": "junk: 1\n"}, "v1")
    source, cache = _source(repo, subdir="mesh")
    assert source.sync() is True and _ports(cache) == [9001]
    missing, _cache = _source(repo, subdir="nope")
    assert missing.sync() is False and "nope: no such directory" in missing.last_error


async def test_missing_branch_is_a_git_error_and_watch_recovers(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    repo.commit({"mesh.yaml": MESH.format(port=9001)}, "v1")
    source, cache = _source(repo, branch="release")
    with pytest.raises(GitError, match="refs/heads/release does not name a commit"):
        source.check()
    ready = asyncio.Event()
    task = asyncio.create_task(source.watch(ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        assert "release" in source.last_error and cache.get("sidecar") is None
        repo.git("branch", "release")
        deadline = time.monotonic() + 5
        while cache.get("sidecar") is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert _ports(cache) == [9001] and source.last_error == ""
    finally:
        task.cancel()
