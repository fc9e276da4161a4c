"""`bench/reload_stall.py` runs, at a small size, and its reload is applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_reload_stall_bench_runs_and_reports_the_stall() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "reload_stall.py"), "50"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "clusters: 50, applied: True, reload:" in done.stdout
    assert "loop stall: worst" in done.stdout
