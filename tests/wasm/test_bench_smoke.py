"""The call-cost bench runs and shows the gap it exists to measure (tiny sizes: a smoke test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "wasm" / "bench_calls.py"


def test_bench_runs_and_fast_path_wins() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--batch", "300", "--repeats", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    results = json.loads(proc.stdout)["results"]
    assert results["py_to_wasm_fast_us"] * 5 < results["py_to_wasm_generic_us"]
    assert results["wasm_to_py_fast_us"] < results["wasm_to_py_generic_us"]
    assert results["disk_cache_compiles_during_bench"] == 0
