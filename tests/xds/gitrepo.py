"""A real git repository in a temporary directory, for the GitOps source tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

MESH = "services:\n  web:\n    endpoints: [{{address: 127.0.0.1, port: {port}}}]\n"


class Repo:
    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", branch)

    def git(self, *args: str, author: str = "Alice Admin <alice@example.com>") -> str:
        name, _, email = author.partition(" <")
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email.rstrip(">"),
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email.rstrip(">"),
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True, text=True, env=env, check=True, timeout=30,
        )  # fmt: skip
        return done.stdout.strip()

    def commit(
        self,
        files: dict[str, str | None],
        message: str,
        author: str = "Alice Admin <alice@example.com>",
    ) -> str:
        """Write (or, with None, delete) files and commit them; returns the commit id."""
        for name, text in files.items():
            target = self.path / name
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.git("rev-parse", "HEAD")
