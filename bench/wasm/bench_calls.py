"""Python<->Wasm call costs: wasmtime-py's generic path against remora.wasm.fastcall, same run.

Measures, as the median over REPEATS batches of the per-call mean:
- a Python->Wasm call of an exported `(i32, i32) -> i32` (`add`);
- a Wasm->Python host call (`call_host_n(N)`: a guest loop making N imported calls);
- instantiating an already-compiled module in a fresh store (policy + linker + instance), and
  the same through a fresh `WasmHost` that loads the module from the on-disk cache.

Run: `.venv/bin/python bench/wasm/bench_calls.py [--json]` (needs `wat2wasm`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from remora.wasm.cache import ModuleCache
from remora.wasm.engine import WASMTIME_VERSION
from remora.wasm.fastcall import bind_call, define_host_func
from remora.wasm.limits import Limits
from remora.wasm.runner import WasmHost

REPO = Path(__file__).resolve().parents[2]
GUEST_WAT = REPO / "tests" / "wasm" / "guests" / "compute.wat"
I32 = wasmtime.ValType.i32()


def build_guest(out_dir: Path) -> bytes:
    out = out_dir / "compute.wasm"
    subprocess.run(["wat2wasm", str(GUEST_WAT), "-o", str(out)], check=True)
    return out.read_bytes()


def median_us(fn: Callable[[], Any], calls_per_batch: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) / calls_per_batch * 1e6)
    return statistics.median(samples)


def host_definer(fast: bool) -> Callable[[wasmtime.Linker, wasmtime.Store], None]:
    def define(linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        ty = wasmtime.FuncType([I32, I32], [I32])
        define_host_func(linker, store, "host", "add", ty, lambda a, b: a + b, fast)

    return define


def bench_calls(wasm: bytes, fast: bool, batch: int, repeats: int) -> dict[str, float]:
    label = "fast" if fast else "generic"
    with WasmHost().instantiate(wasm, definers=[host_definer(fast)]) as guest:
        func, store = guest.func("add"), guest.store
        if fast:
            call = bind_call(store, func, True).call

            def py_to_wasm() -> None:
                for _ in range(batch):
                    call(1, 2)
        else:

            def py_to_wasm() -> None:
                for _ in range(batch):
                    func(store, 1, 2)

        py_to_wasm()  # warm-up
        host_loop = bind_call(store, guest.func("call_host_n"), True).call
        host_loop(batch)
        return {
            f"py_to_wasm_{label}_us": median_us(py_to_wasm, batch, repeats),
            f"wasm_to_py_{label}_us": median_us(lambda: host_loop(batch), batch, repeats),
        }


def bench(wasm: bytes, batch: int, repeats: int) -> dict[str, float]:
    results = bench_calls(wasm, False, batch, repeats) | bench_calls(wasm, True, batch, repeats)
    host = WasmHost()
    host.load(wasm, Limits())
    n = max(20, batch // 50)

    def instantiate() -> None:
        for _ in range(n):
            host.instantiate(wasm, definers=[host_definer(True)]).close()

    instantiate()
    results["instantiate_in_memory_module_us"] = median_us(instantiate, n, repeats)

    with tempfile.TemporaryDirectory() as cache_dir:
        cache = ModuleCache(cache_dir)
        WasmHost(cache).load(wasm, Limits())  # populate the disk cache

        def from_disk() -> None:
            for _ in range(n):
                WasmHost(cache).instantiate(wasm, definers=[host_definer(True)]).close()

        results["instantiate_from_disk_cache_us"] = median_us(from_disk, n, repeats)
        results["disk_cache_compiles_during_bench"] = cache.stats.compiles - 1
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wasm = build_guest(Path(tmp))
    results = bench(wasm, args.batch, args.repeats)
    meta = {
        "wasmtime": WASMTIME_VERSION,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "batch": args.batch,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return 0
    print(f"wasmtime {meta['wasmtime']}, Python {meta['python']}, median of {args.repeats} batches")
    for key, value in results.items():
        print(f"  {key:<36} {value:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
