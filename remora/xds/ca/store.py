"""The CA directory: private files written atomically, and `state.json`.

The directory is the CA's memory across restarts: its roots' keys and certificates, which root
signs, and the ledger of unexpired SVIDs that says when an old root may leave the bundle. Every
write goes to a temporary file that is renamed over the old one, so a crash leaves either the old
file or the new one, never half a key.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from remora.xds.ca.errors import CaError

STATE = "state.json"
BUNDLE = "bundle.pem"
STATE_VERSION = 1


def ensure_directory(directory: Path) -> None:
    """Create `directory` (0700) if missing; refuse one others can read, since keys live there."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CaError(f"CA directory {directory}: cannot create: {exc.strerror}") from None
    if not directory.is_dir():
        raise CaError(f"CA directory {directory}: not a directory")
    mode = directory.stat().st_mode & 0o777
    if mode & 0o077:
        raise CaError(
            f"CA directory {directory}: mode {mode:04o} lets others in; it holds private keys "
            f"(chmod 700 {directory})"
        )


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_state(directory: Path) -> dict[str, Any] | None:
    """The saved state, None for a new directory; a CaError for one that is unreadable."""
    path = directory / STATE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CaError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise CaError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CaError(f"{path}: not a remora CA state file of version {STATE_VERSION}")
    return state


def write_state(directory: Path, state: dict[str, Any]) -> None:
    data = json.dumps({**state, "version": STATE_VERSION}, indent=2, sort_keys=True) + "\n"
    write_atomic(directory / STATE, data.encode())


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CaError(f"{what} {path}: cannot read: {exc.strerror}") from None
