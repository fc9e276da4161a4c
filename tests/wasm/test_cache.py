from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from remora.wasm.cache import MAGIC, ModuleCache
from remora.wasm.engine import EngineConfig, engine_for
from remora.wasm.errors import CacheError, ModuleFormatError
from remora.wasm.limits import Limits
from remora.wasm.runner import WasmHost
from remora.wasm.sandbox import SandboxPolicy


def test_second_load_hits_cache_and_is_faster(
    tmp_path: Path, guest: Callable[[str], bytes]
) -> None:
    wasm = guest("hello")
    handle = engine_for(EngineConfig())
    first = ModuleCache(tmp_path / "c")
    t0 = time.perf_counter()
    first.load(handle, wasm)
    compile_s = time.perf_counter() - t0
    assert (first.stats.compiles, first.stats.hits) == (1, 0)

    # A fresh cache object over the same dir stands in for a second process start.
    second = ModuleCache(tmp_path / "c")
    t0 = time.perf_counter()
    module = second.load(handle, wasm)
    load_s = time.perf_counter() - t0
    assert (second.stats.compiles, second.stats.hits) == (0, 1)
    assert {e.name for e in module.exports} >= {"_start", "memory"}
    print(f"compile {compile_s * 1e3:.2f} ms, cached load {load_s * 1e3:.2f} ms")
    assert load_s < compile_s


def test_cached_module_runs(tmp_path: Path, guest: Callable[[str], bytes]) -> None:
    cache = ModuleCache(tmp_path)
    policy = SandboxPolicy(args=("hello", "7"))
    first, second = WasmHost(cache), WasmHost(cache)  # two hosts share the disk cache
    assert first.run(guest("hello"), policy).exit_code == 7
    assert second.run(guest("hello"), policy).exit_code == 7
    assert (cache.stats.compiles, cache.stats.hits) == (1, 1)
    # A host reuses its in-memory module without touching the disk cache again.
    assert second.run(guest("hello"), policy).exit_code == 7
    assert (cache.stats.compiles, cache.stats.hits) == (1, 1)


def test_memo_is_bounded(guest: Callable[[str], bytes]) -> None:
    host = WasmHost(memo_size=1)
    host.load(guest("compute"), Limits())
    host.load(guest("grow_bomb"), Limits())
    assert len(host._memo) == 1


def test_key_depends_on_engine_config(tmp_path: Path, guest: Callable[[str], bytes]) -> None:
    cache = ModuleCache(tmp_path)
    wasm = guest("compute")
    plain = engine_for(EngineConfig())
    fueled = engine_for(Limits(fuel=10).engine_config())
    assert cache.key(plain, wasm) != cache.key(fueled, wasm)
    cache.load(plain, wasm)
    cache.load(fueled, wasm)
    assert cache.stats.compiles == 2


@pytest.mark.parametrize(
    "tamper",
    [
        lambda blob: blob[:-100],  # truncated
        lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]),  # one bit flipped in the payload
        lambda blob: b"garbage" + blob,  # wrong magic
    ],
)
def test_tampered_entry_is_rejected_and_recompiled(
    tmp_path: Path, guest: Callable[[str], bytes], tamper: Callable[[bytes], bytes]
) -> None:
    cache = ModuleCache(tmp_path)
    handle = engine_for(EngineConfig())
    wasm = guest("compute")
    cache.load(handle, wasm)
    entry = cache.path_for(cache.key(handle, wasm))
    entry.write_bytes(tamper(entry.read_bytes()))
    cache.load(handle, wasm)
    assert cache.stats.rejected == 1
    assert cache.stats.compiles == 2
    assert entry.read_bytes().startswith(MAGIC)


def test_entry_from_another_cache_is_not_trusted(
    tmp_path: Path, guest: Callable[[str], bytes]
) -> None:
    """A valid serialized module that this cache did not write (different secret) is refused."""
    handle = engine_for(EngineConfig())
    wasm = guest("compute")
    other, ours = ModuleCache(tmp_path / "other"), ModuleCache(tmp_path / "ours")
    other.load(handle, wasm)
    key = other.key(handle, wasm)
    ours.path_for(key).write_bytes(other.path_for(key).read_bytes())
    ours.load(handle, wasm)
    assert (ours.stats.rejected, ours.stats.compiles) == (1, 1)


def test_entry_renamed_to_another_key_is_refused(
    tmp_path: Path, guest: Callable[[str], bytes]
) -> None:
    cache = ModuleCache(tmp_path)
    handle = engine_for(EngineConfig())
    cache.load(handle, guest("compute"))
    src = cache.path_for(cache.key(handle, guest("compute")))
    dst = cache.path_for(cache.key(handle, guest("grow_bomb")))
    os.replace(src, dst)
    module = cache.load(handle, guest("grow_bomb"))
    assert cache.stats.rejected == 1
    assert "bomb" in {e.name for e in module.exports}


def test_world_writable_dir_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    with pytest.raises(CacheError, match="writable by other users"):
        ModuleCache(tmp_path)


def test_corrupt_module_is_a_format_error(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path)
    with pytest.raises(ModuleFormatError, match=r"x\.wasm: invalid WebAssembly module"):
        cache.load(engine_for(EngineConfig()), b"\0asm\x01\0\0\0\x01\x05", "x.wasm")
    assert list(tmp_path.glob("*.cwasm")) == []


def test_no_temp_files_left_behind(tmp_path: Path, guest: Callable[[str], bytes]) -> None:
    cache = ModuleCache(tmp_path)
    cache.load(engine_for(EngineConfig()), guest("compute"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []
    assert oct(tmp_path.joinpath("secret").stat().st_mode & 0o777) == "0o600"
