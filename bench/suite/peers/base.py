"""What every peer provides: a version string, and a command line for a listener."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from suite.realistic import Profile

Mode = Literal["http", "tcp"]

# The same limits and timeouts for every peer, so that no peer is measured against its defaults
# (Envoy's 1024-connection circuit breaker, HAProxy's computed maxconn, ...). Connection limits
# come from the scenario (`Listener.max_connections`): nginx preallocates per-connection state for
# worker_connections, so a needlessly large limit would inflate its RSS.
IDLE_TIMEOUT_S = 300
UPSTREAM_KEEPALIVE = 128  # idle keep-alive connections a peer may keep to the upstream


@dataclass(frozen=True)
class TlsFiles:
    """The TLS rows' certificate: PEM certificate, PEM key, and both in one file."""

    cert: Path
    key: Path
    combined: Path


@dataclass(frozen=True)
class Listener:
    """Where a peer listens, in which mode, and where it forwards."""

    mode: Mode
    host: str
    port: int
    upstream_host: str
    upstream_port: int
    max_connections: int = 4096
    #: "minimal": one catch-all route, no access log (most rows); "realistic": see suite.realistic.
    profile: Profile = "minimal"
    #: Terminate TLS with this certificate (the TLS rows); None is plaintext.
    tls: TlsFiles | None = None
    #: With `tls`: require a client certificate, verified against this file (mTLS rows).
    client_ca: Path | None = None
    #: Talk TLS to the upstream, presenting this certificate and verifying the upstream's
    #: against it (the mTLS link between two hops).
    upstream_tls: TlsFiles | None = None


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: Send the load here instead of the listener's port (the no-proxy floor).
    target_port: int | None = None
    #: The file the peer's access log goes to (realistic profile): the runner checks it grows.
    access_log: Path | None = None
    #: Send the peer's stdout here, apart from its stderr (HAProxy logs to stdout).
    stdout: Path | None = None


class Peer(ABC):
    name: str
    title: str
    modes: frozenset[Mode]
    #: Why a mode is missing, shown in the report instead of a number.
    unsupported_reason: str = ""
    #: False when the started process is not the thing measured (no CPU/RSS to report).
    process_costs: bool = True
    #: Only run where a floor is informative (fixed-rate latency).
    calibration_only: bool = False
    #: The config profiles this peer can be launched with, and why one is missing.
    profiles: frozenset[Profile] = frozenset({"minimal", "realistic"})
    profile_reason: str = ""
    #: Whether this peer is configured to terminate TLS in the TLS rows, and why not.
    tls: bool = False
    tls_reason: str = "not configured for TLS in this suite"
    #: Whether it is configured for mTLS to and from another instance of itself.
    hop_mtls: bool = False

    def supports(self, mode: Mode) -> bool:
        return mode in self.modes

    def skip_reason(
        self, mode: Mode, profile: Profile, tls: bool = False, hop_mtls: bool = False
    ) -> str | None:
        """Why this peer sits out a scenario with this listener mode and profile, or None."""
        if tls and not self.tls:
            return self.tls_reason
        if hop_mtls and not self.hop_mtls:
            return "not configured for mTLS between hops in this suite"
        if not self.supports(mode):
            return self.unsupported_reason or "not supported"
        if profile not in self.profiles:
            return self.profile_reason or f"no {profile} config"
        return None

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def launch(self, listener: Listener, workdir: Path) -> Launch:
        """Write this peer's config for `listener` under `workdir`; return how to start it."""


def command_version(argv: list[str], line: int = 0) -> str:
    """The first line of a tool's version output, or 'unknown'."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[line].strip() if len(lines) > line else "unknown"
