"""Compile vs. cached load of a real C guest (tests/wasm/guests/hello.c, about 150 KB of Wasm).

"A second start of the same module must not recompile it": each sample uses a fresh
`ModuleCache` object over the same directory (what a second process start sees), and the
compile counter proves no recompilation happened.

Run: `.venv/bin/python bench/wasm/bench_cache.py` (needs clang with wasi-libc).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from remora.wasm.cache import ModuleCache
from remora.wasm.engine import EngineConfig, engine_for

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "tests" / "wasm" / "guests" / "hello.c"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hello.wasm"
        subprocess.run(
            ["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", str(SOURCE), "-o", str(out)],
            check=True,
        )
        wasm = out.read_bytes()
        handle = engine_for(EngineConfig())
        compiles, loads = [], []
        for i in range(7):
            cache_dir = Path(tmp) / f"cache{i}"
            t0 = time.perf_counter()
            ModuleCache(cache_dir).load(handle, wasm)
            compiles.append(time.perf_counter() - t0)
            second = ModuleCache(cache_dir)
            t0 = time.perf_counter()
            second.load(handle, wasm)
            loads.append(time.perf_counter() - t0)
            assert second.stats.compiles == 0 and second.stats.hits == 1
    print(f"module: {len(wasm)} bytes; median of {len(compiles)}")
    print(f"  first start (compile + write cache)  {statistics.median(compiles) * 1e3:8.2f} ms")
    print(f"  second start (verify + deserialize)  {statistics.median(loads) * 1e3:8.2f} ms")
    print("  recompilations on second start: 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
