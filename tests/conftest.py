"""Shared test fixtures.

Tests that need root, CAP_BPF or similar call `require_privileged()`: unprivileged runs skip with a
reason, but CI sets REMORA_REQUIRE_PRIVILEGED=1 so a skip there is a failure, never a silent pass.
"""

from __future__ import annotations

import os

import pytest

from remora import native


def pytest_sessionstart(session: pytest.Session) -> None:
    # A compiled module built from other sources would test old code while reporting on the new.
    if native.stale():
        pytest.exit(
            f"stale compiled modules (run `make native`): {native.stale_summary()}", returncode=4
        )


def require_privileged(reason: str = "needs root (CAP_BPF/CAP_SYS_ADMIN)") -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("REMORA_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"REMORA_REQUIRE_PRIVILEGED=1 but not privileged: {reason}")
    pytest.skip(reason)


@pytest.fixture
def privileged() -> None:
    require_privileged()
