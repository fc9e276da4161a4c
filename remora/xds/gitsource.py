"""GitOps: serve the mesh config at the tip of a branch of a local git repository.

The branch is polled (`git rev-parse`, a few milliseconds), so every way of moving it works the
same: a new commit, a merge, a `git reset`, or a rollback by checking an older commit out onto the
branch. A commit is exported with `git archive` into a scratch directory and loaded by the same
all-or-nothing directory loader, so a bad commit names its file and field, is logged with its
commit and author, and is refused while the last good commit keeps serving. The snapshot's label
is `branch@commit`; wire versions stay content hashes, so a commit that does not change the config
(a README edit, or a revert back to what is serving) pushes nothing.

The git CLI is used through subprocess (no library); it runs in a worker thread, and snapshots
are installed back on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import os
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remora.xds.source import (
    FirstLoadError,
    MeshConfig,
    Publisher,
    SourceError,
    parse_directory,
    unexpected,
    warn_if_empty,
)

log = logging.getLogger("remora.xds.git")

_HISTORY = 50  # events kept for the admin endpoint
_TIMEOUT = 30.0


class GitError(Exception):
    """A git command failed: the repository or ref is unusable (not the config in it)."""


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    author: str  # "Name <email>"
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:12]


@dataclass(frozen=True, slots=True)
class GitEvent:
    commit: str
    author: str
    subject: str
    status: str  # "applied" (pushed), "unchanged" (same config), "rejected"
    summary: str  # what changed since the commit serving before
    error: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class GitRepo:
    """The few git plumbing commands the source needs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, *args: str) -> bytes:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        try:
            done = subprocess.run(
                ["git", "-C", str(self.path), *args],
                capture_output=True,
                timeout=_TIMEOUT,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GitError(f"git {args[0]}: {exc}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise GitError(f"git {' '.join(args)}: {detail[-1] if detail else 'failed'}")
        return done.stdout

    def resolve(self, ref: str) -> str:
        try:
            return (
                self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
            )
        except GitError:
            if not self.path.is_dir():
                raise GitError(f"{self.path}: no such directory") from None
            try:
                self.run("rev-parse", "--git-dir")
            except GitError:
                raise GitError(f"{self.path}: not a git repository") from None
            raise GitError(f"{self.path}: {ref} does not name a commit") from None

    def commit(self, sha: str) -> Commit:
        out = self.run("show", "-s", "--format=%H%x00%an <%ae>%x00%s", sha).decode(errors="replace")
        full, author, subject = out.rstrip("\n").split("\0", 2)
        return Commit(full, author, subject)

    def diff_summary(self, old: str | None, new: str) -> str:
        """`M mesh.yaml, A raw.yaml (2 files changed, 3 insertions(+))`, or the file count."""
        if old is None:
            files = self.run("ls-tree", "-r", "--name-only", new).decode().split()
            return f"initial: {len(files)} files"
        if old == new:
            return "same commit"
        names = self.run("diff", "--name-status", old, new).decode(errors="replace")
        changes = [" ".join(line.split("\t")) for line in names.splitlines() if line]
        stat = self.run("diff", "--shortstat", old, new).decode().strip()
        return f"{', '.join(changes)} ({stat})" if changes else "no file changes"

    def export(self, sha: str, destination: Path) -> None:
        data = self.run("archive", "--format=tar", sha)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(destination, filter="data")


@dataclass(frozen=True, slots=True)
class _Loaded:
    commit: Commit
    summary: str
    config: MeshConfig | None
    error: str


class GitSource:
    def __init__(
        self,
        repo: Path,
        branch: str,
        publisher: Publisher,
        poll: float = 1.0,
        subdir: str = "",
    ) -> None:
        self.repo = GitRepo(repo)
        self.branch = branch
        # HEAD follows whatever is checked out (a detached older commit included).
        self.ref = "HEAD" if branch == "HEAD" else f"refs/heads/{branch}"
        self.publisher = publisher
        self.poll = poll
        self.subdir = subdir
        self.applied: Commit | None = None  # serving
        self.seen = ""  # last commit looked at, applied or refused
        self.last_error = ""
        self.history: list[GitEvent] = []

    # -- blocking half (worker thread) ---------------------------------------------------------
    def check(self) -> _Loaded | None:
        """Resolve the branch; if it moved, export and parse the new commit."""
        sha = self.repo.resolve(self.ref)
        if sha == self.seen:
            return None
        commit = self.repo.commit(sha)
        summary = self.repo.diff_summary(self.applied.sha if self.applied else None, sha)
        with tempfile.TemporaryDirectory(prefix="remora-git-") as scratch:
            self.repo.export(sha, Path(scratch))
            root = Path(scratch, self.subdir)
            try:
                if not root.is_dir():
                    raise SourceError([])
                return _Loaded(commit, summary, parse_directory(root), "")
            except SourceError as exc:
                error = str(exc) or f"{self.subdir}: no such directory in the commit"
                return _Loaded(commit, summary, None, error)

    # -- event-loop half -----------------------------------------------------------------------
    def load_first(self) -> None:
        """The start-up load: raises `FirstLoadError` rather than logging, since nothing is
        served yet and the caller exits instead of serving an empty mesh."""
        try:
            loaded = self.check()
        except Exception as exc:  # git's failures and any surprise: do not start
            problem = str(exc) if isinstance(exc, GitError) else unexpected(exc)
            raise FirstLoadError(f"{self.repo.path} {self.branch}", [problem]) from None
        if loaded is None:  # already loaded
            return
        changed, error = self._publish(loaded)
        if error:
            commit = loaded.commit
            self.last_error = f"commit {commit.short} by {commit.author}: {error}"
            self.publisher.stats.source_errors += 1
            self._record(commit, "rejected", loaded.summary, error)
            where = f"{self.repo.path} {self.branch} (commit {commit.short} by {commit.author})"
            raise FirstLoadError(where, error.splitlines())
        self._installed(loaded, changed)

    def _label(self, commit: Commit) -> str:
        return f"{self.branch}@{commit.short}"

    def _publish(
        self, loaded: _Loaded, published: list[str] | Exception | None = None
    ) -> tuple[list[str], str]:
        """(groups changed, error) for installing `loaded`; `published` is the outcome of a
        publish already run off the loop (`install_async`), else it is run here."""
        commit = loaded.commit
        self.seen = commit.sha
        changed: list[str] = []
        error = loaded.error
        if loaded.config is not None and not error:
            try:
                if isinstance(published, Exception):
                    raise published
                changed = (
                    self.publisher.publish(loaded.config, self._label(commit))
                    if published is None
                    else published
                )
            except SourceError as exc:
                error = str(exc)
            except Exception as exc:  # a surprise rejects the commit, no more
                log.debug("unexpected failure publishing %s", commit.sha, exc_info=True)
                error = unexpected(exc)
            else:
                warn_if_empty(loaded.config, self._label(commit))
        return changed, error

    async def install_async(self, loaded: _Loaded) -> bool:
        """`install`, building the snapshots off the event loop."""
        published: list[str] | Exception | None = None
        if loaded.config is not None and not loaded.error:
            try:
                published = await self.publisher.publish_async(
                    loaded.config, self._label(loaded.commit)
                )
            except Exception as exc:  # judged by `_publish`, as a synchronous failure would be
                published = exc
        return self.install(loaded, published)

    def install(self, loaded: _Loaded, published: list[str] | Exception | None = None) -> bool:
        commit = loaded.commit
        changed, error = self._publish(loaded, published)
        if error:
            self.last_error = f"commit {commit.short} by {commit.author}: {error}"
            self.publisher.stats.source_errors += 1
            serving = self.applied.short if self.applied else "nothing"
            log.error(
                "refused commit %s by %s (%r), still serving %s:\n%s",
                commit.short, commit.author, commit.subject, serving, error,
            )  # fmt: skip
            self._record(commit, "rejected", loaded.summary, error)
            return False
        self._installed(loaded, changed)
        return True

    def _installed(self, loaded: _Loaded, changed: list[str]) -> None:
        commit = loaded.commit
        self.last_error = ""
        status = "applied" if changed else "unchanged"
        log.info(
            "%s commit %s by %s (%r): %s; snapshots changed: %s",
            status, commit.short, commit.author, commit.subject, loaded.summary,
            ", ".join(changed) or "none",
        )  # fmt: skip
        self._record(commit, status, loaded.summary, "")
        self.applied = commit

    def _record(self, commit: Commit, status: str, summary: str, error: str) -> None:
        event = GitEvent(commit.sha, commit.author, commit.subject, status, summary, error,
                         time.time())  # fmt: skip
        self.history.append(event)
        del self.history[:-_HISTORY]

    def sync(self) -> bool | None:
        """Check and install now; None when the branch has not moved."""
        loaded = self.check()
        return None if loaded is None else self.install(loaded)

    async def watch(self, ready: asyncio.Event | None = None) -> None:
        """Poll the branch forever; a git failure is logged once and retried."""
        failure = ""
        while True:
            try:
                loaded = await asyncio.to_thread(self.check)
                if failure and self.last_error == failure:
                    self.last_error = ""
                failure = ""
                if loaded is not None:
                    await self.install_async(loaded)
            except Exception as exc:  # git failures, and any surprise, retry
                problem = str(exc) if isinstance(exc, GitError) else unexpected(exc)
                if problem != failure:
                    failure = problem
                    log.error("git source: %s (still serving the last good commit)", problem)
                self.last_error = failure
            if ready is not None:
                ready.set()
                ready = None
            await asyncio.sleep(self.poll)

    def info(self) -> dict[str, Any]:
        return {
            "kind": "git",
            "repository": str(self.repo.path),
            "branch": self.branch,
            "serving": dataclasses.asdict(self.applied) if self.applied else None,
            "last_error": self.last_error,
            "history": [e.as_dict() for e in reversed(self.history)],
        }
