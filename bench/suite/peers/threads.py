"""The thread-per-connection Python proxy in bench/peers/threadproxy.py."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from suite.peers.base import Launch, Listener, Mode, Peer
from suite.realistic import Profile

SCRIPT = Path(__file__).resolve().parents[2] / "peers" / "threadproxy.py"


class Threads(Peer):
    name = "threads"
    title = "Python thread-per-connection (blocking sockets, httptools)"
    modes: frozenset[Mode] = frozenset({"http", "tcp"})
    profiles: frozenset[Profile] = frozenset({"minimal"})
    profile_reason = "a bare forwarder (no access log, request ids or routes): a baseline only"

    def version(self) -> str:
        return f"CPython {platform.python_version()} threads"

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        return Launch(
            argv=[
                sys.executable,
                str(SCRIPT),
                "--listen",
                f"{listener.host}:{listener.port}",
                "--upstream",
                f"{listener.upstream_host}:{listener.upstream_port}",
                "--mode",
                listener.mode,
            ]
        )
