"""Fuzzing `remora wasm inspect` and `remora wasm run` as a user runs them, one child per command.

Modules come from two sources: seeded byte mutations of the test guests, and small modules
generated structurally (tests/wasm/wasmgen.py: every value type, tables and memories around
the caps, grow loops). Each runs `inspect`, `inspect --json` and `run` under tight limits in a
child process, because a panic in wasmtime aborts the process it happens in. Invariants: the
child exits by itself with 0 or a documented code, never by a signal; a failure is reported as
one `remora wasm: error:` line (plus backtrace `at` lines and notes), never a traceback or a
Rust panic; peak RSS and wall time stay bounded.

A normal test run tries a few modules (about 3 s on 2 cores), always the same ones. For a
longer, randomized run:

    REMORA_FUZZ_EXAMPLES=300 .venv/bin/pytest -q tests/wasm/test_fuzz.py

which tries 300 modules of each source (set REMORA_FUZZ_SEED to replay one run). A failure
names the seed, the module's bytes (saved under the test's tmp_path) and the broken invariant.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from remora.wasm.cli import EXIT_HOST_ERROR, EXIT_TRAPPED
from tests.wasm import wasmgen
from tests.wasm.cli_child import ChildResult, run_cli

EXAMPLES = int(os.environ.get("REMORA_FUZZ_EXAMPLES", "0"))
SEED = int(os.environ.get("REMORA_FUZZ_SEED", "0")) or (
    random.randrange(1 << 32) if EXAMPLES else 1
)
PER_SOURCE = EXAMPLES or 3
MAX_RSS = 300 << 20
MAX_WALL = 15.0
RUN_LIMITS = (
    "--no-cache", "--fuel", "2000000", "--timeout", "2", "--max-memory", "16MiB",
    "--max-table-elements", "5000",
)  # fmt: skip
# Mutation seeds: the WAT guests and one C command (WASI imports, a real _start).
SEED_GUESTS = ("compute", "grow_bomb", "big_table", "multi", "hello")
# WASI allows exit statuses 0..125; the host adds 1 (unusable module or options) and 134 (trap).
RUN_CODES = {*range(126), EXIT_HOST_ERROR, EXIT_TRAPPED}
INSPECT_CODES = {0, EXIT_HOST_ERROR}
_OUR_LINES = ("remora wasm: error: ", "remora wasm: note: ")


def violations(result: ChildResult, codes: set[int]) -> list[str]:
    broken = []
    if result.killed_for:
        broken.append(f"killed for {result.killed_for} after {result.wall:.1f}s")
    if result.returncode < 0:
        broken.append(f"died of {result.signal_name}")
    elif result.returncode not in codes:
        broken.append(f"exit code {result.returncode}")
    if result.peak_rss > MAX_RSS:
        broken.append(f"peak RSS {result.peak_rss >> 20} MiB")
    for marker in ("Traceback", "panicked", "internal error", "RUST_BACKTRACE"):
        if marker in result.stderr:
            broken.append(f"stderr has {marker!r}")
    if result.returncode in (EXIT_HOST_ERROR, EXIT_TRAPPED):
        ours = [line for line in result.stderr.splitlines() if line.startswith("remora wasm")]
        errors = [line for line in ours if line.startswith("remora wasm: error: ")]
        others = [line for line in ours if not line.startswith(_OUR_LINES)]
        if len(errors) != 1 or others:
            broken.append(f"not one clean error line: {ours}")
    return broken


def check_module(path: Path) -> list[str]:
    """Every path a user takes with `path`, each in its own child; the broken invariants."""
    broken = []
    text = run_cli(["wasm", "inspect", str(path)], MAX_RSS * 2, MAX_WALL)
    broken += [f"inspect: {v}" for v in violations(text, INSPECT_CODES)]
    as_json = run_cli(["wasm", "inspect", str(path), "--json"], MAX_RSS * 2, MAX_WALL)
    broken += [f"inspect --json: {v}" for v in violations(as_json, INSPECT_CODES)]
    if as_json.returncode == 0:
        try:
            json.loads(as_json.stdout)
        except ValueError:
            broken.append("inspect --json: stdout is not JSON")
    if text.returncode != as_json.returncode:
        broken.append(f"inspect exits {text.returncode}, --json {as_json.returncode}")
    ran = run_cli(["wasm", "run", str(path), *RUN_LIMITS], MAX_RSS * 2, MAX_WALL)
    broken += [f"run: {v}" for v in violations(ran, RUN_CODES)]
    if not broken:
        return []
    return [*broken, f"stderr of run: {ran.stderr[-500:]!r}", f"of inspect: {text.stderr[-300:]!r}"]


def fuzz(cases: list[tuple[str, bytes]], tmp_path: Path) -> None:
    paths = []
    for label, data in cases:
        path = tmp_path / f"{label}.wasm"
        path.write_bytes(data)
        paths.append(path)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        reports = list(pool.map(check_module, paths))
    failures = [
        f"{path} (seed {SEED}, {path.stat().st_size} bytes: {path.read_bytes()[:96].hex()}):\n  "
        + "\n  ".join(report)
        for path, report in zip(paths, reports, strict=True)
        if report
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.timeout(0)
def test_generated_modules(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    fuzz([(f"gen{i}", wasmgen.module(rng).data) for i in range(PER_SOURCE)], tmp_path)


@pytest.mark.timeout(0)
def test_mutated_guests(guest: Callable[[str], bytes], tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    seeds = [guest(name) for name in SEED_GUESTS]
    cases = [(f"mut{i}", wasmgen.mutate(rng, rng.choice(seeds))) for i in range(PER_SOURCE)]
    fuzz(cases, tmp_path)


def test_the_invariants_catch_a_panic() -> None:
    """The checker itself: a child that dies of SIGABRT with a Rust panic fails it."""
    panicked = ChildResult(
        ("wasm", "inspect"), -6, "", "thread panicked at x\n", 1 << 20, 0.1, None
    )
    assert "died of SIGABRT" in violations(panicked, INSPECT_CODES)
    assert "stderr has 'panicked'" in violations(panicked, INSPECT_CODES)
    two = ChildResult(("wasm", "run"), 1, "", "remora wasm: error: a\nremora wasm: x\n", 0, 0, None)
    assert violations(two, RUN_CODES)
