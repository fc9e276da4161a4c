"""Shared test fixtures.

Tests that need root, CAP_BPF or similar call `require_privileged()`: unprivileged runs skip with a
reason, but CI sets REMORA_REQUIRE_PRIVILEGED=1 so a skip there is a failure, never a silent pass.
"""

from __future__ import annotations

import os
import sys

import pytest

from remora import native


def pytest_sessionstart(session: pytest.Session) -> None:
    if native.interpreted():
        # REMORA_NATIVE=0 (`make pytest-interpreted`): the extensions are not loaded, so their
        # staleness does not matter, but the finder that keeps them out must be in place.
        if not any(isinstance(f, native.SourceOnlyFinder) for f in sys.meta_path):
            pytest.exit("REMORA_NATIVE=0 but remora's source-only finder is not installed", 4)
        return
    # A compiled module built from other sources would test old code while reporting on the new.
    if native.stale():
        pytest.exit(
            f"stale compiled modules (run `make native`): {native.stale_summary()}", returncode=4
        )


def pytest_report_header(config: pytest.Config) -> str:
    if native.interpreted():
        return f"remora: hot path interpreted ({native.ENV}=0)"
    built = native.compiled()
    return f"remora: hot path compiled ({len(built)} of {len(native.MODULES)} modules built)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # An interpreted run that loaded compiled code would pass on the build's behalf.
    if native.interpreted() and native.loaded_extensions():
        loaded = ", ".join(native.loaded_extensions())
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(f"REMORA_NATIVE=0 run loaded compiled modules: {loaded}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def require_privileged(reason: str = "needs root (CAP_BPF/CAP_SYS_ADMIN)") -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("REMORA_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"REMORA_REQUIRE_PRIVILEGED=1 but not privileged: {reason}")
    pytest.skip(reason)


@pytest.fixture
def privileged() -> None:
    require_privileged()
