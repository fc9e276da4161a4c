"""WASI preview 1 policy: everything denied unless granted.

wasmtime's WASI context already starts empty (no args, no env, no preopens, stdio closed, no
sockets: remora never calls `inherit_network`). This module turns a declarative `SandboxPolicy`
into that context, captures stdout/stderr into bounded buffers, and optionally replaces the clock
and random imports with deterministic ones.

Virtual clock and deterministic random. wasmtime-py exposes no WasiConfig hook for clocks or
randomness, so they are provided by *shadowing* the `wasi_snapshot_preview1` imports
`clock_time_get`, `clock_res_get` and `random_get` in the linker with host functions that read a
counter and a seeded PRNG. `poll_oneoff` (sleep) still uses the real clock.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from remora.wasm.errors import WasmError

WASI_MODULE = "wasi_snapshot_preview1"
ERRNO_SUCCESS = 0
ERRNO_FAULT = 21
ERRNO_INVAL = 28
DEFAULT_OUTPUT_CAP = 1 << 20


class PolicyError(WasmError):
    """The sandbox policy itself is invalid (bad preopen, bad env name...)."""


@dataclass(frozen=True)
class Preopen:
    """A host directory made visible to the guest at `guest`; read-only unless `writable`."""

    host: Path
    guest: str
    writable: bool = False

    @classmethod
    def parse(cls, spec: str) -> Preopen:
        """`HOST::GUEST[:rw|:ro]` (the CLI's --dir syntax); `HOST` alone maps to the same path."""
        host, sep, rest = spec.partition("::")
        if not sep and ":" in spec and not Path(spec).exists():
            docker_host, _, docker_guest = spec.partition(":")
            raise PolicyError(
                f"--dir {spec!r}: HOST and GUEST are separated by two colons (a host path may "
                f"itself hold one); did you mean '{docker_host}::{docker_guest}'?"
            )
        guest, writable = (rest, False) if sep else (host, False)
        for suffix, flag in ((":rw", True), (":ro", False)):
            if guest.endswith(suffix):
                guest, writable = guest[: -len(suffix)], flag
        if not host or not guest:
            raise PolicyError(f"--dir {spec!r}: expected HOST::GUEST[:rw]")
        return cls(Path(host), guest, writable)


def _not_a_directory(path: Path) -> str:
    if not path.exists():
        return "no such directory"
    return "not a directory"


@dataclass(frozen=True)
class VirtualClock:
    """Deterministic time: starts at `start_ns`, advances `step_ns` at every read."""

    start_ns: int = 1_700_000_000 * 10**9
    step_ns: int = 1_000


@dataclass(frozen=True)
class SandboxPolicy:
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    preopens: Sequence[Preopen] = ()
    stdout_cap: int = DEFAULT_OUTPUT_CAP
    stderr_cap: int = DEFAULT_OUTPUT_CAP
    inherit_stdout: bool = False
    inherit_stderr: bool = False
    stdin: bytes | None = None
    virtual_clock: VirtualClock | None = None
    random_seed: int | None = None


class OutputBuffer:
    """Keeps the first `cap` bytes a guest writes; the rest is counted and dropped.

    The write callback always reports the full length as written: a guest that is told its
    write was short would retry forever, burning its CPU budget instead of finishing.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._chunks = bytearray()
        self.dropped = 0

    def write(self, data: bytes) -> int:
        room = self.cap - len(self._chunks)
        if room > 0:
            self._chunks += data[:room]
        self.dropped += max(0, len(data) - max(room, 0))
        return len(data)

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def getvalue(self) -> bytes:
        return bytes(self._chunks)


def pending_output_callbacks() -> int:
    """How many OutputBuffer callbacks wasmtime still holds (released asynchronously, on a
    wasmtime runtime thread, shortly after their store is dropped)."""
    from wasmtime import _wasi

    handles = list(_wasi.CUSTOM_OUTPUTS.handles.values())
    return sum(isinstance(getattr(h, "__self__", None), OutputBuffer) for h in handles)


@dataclass
class WasiContext:
    config: wasmtime.WasiConfig
    stdout: OutputBuffer
    stderr: OutputBuffer


def build_wasi(policy: SandboxPolicy) -> WasiContext:
    config = wasmtime.WasiConfig()
    config.argv = list(policy.args)
    for name in policy.env:
        if not name or "=" in name or "\0" in name:
            raise PolicyError(f"env: invalid variable name {name!r}")
    config.env = [(k, v) for k, v in policy.env.items()]
    for pre in policy.preopens:
        if not pre.host.is_dir():
            raise PolicyError(f"--dir {pre.host}: {_not_a_directory(pre.host)}")
        config.preopen_dir(os.fspath(pre.host.resolve()), pre.guest, pre.writable)
    stdout, stderr = OutputBuffer(policy.stdout_cap), OutputBuffer(policy.stderr_cap)
    if policy.inherit_stdout:
        config.inherit_stdout()
    else:
        config.stdout_custom = stdout.write
    if policy.inherit_stderr:
        config.inherit_stderr()
    else:
        config.stderr_custom = stderr.write
    if policy.stdin is not None:
        # No setter for bytes in the Python class; the C API has one and takes a wasm_byte_vec.
        _set_stdin_bytes(config, policy.stdin)
    return WasiContext(config, stdout, stderr)


def _set_stdin_bytes(config: wasmtime.WasiConfig, data: bytes) -> None:
    import ctypes

    from wasmtime import _ffi as ffi

    vec = ffi.wasm_byte_vec_t()
    raw = (ffi.wasm_byte_t * max(1, len(data))).from_buffer_copy(data.ljust(1, b"\0"))
    ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), raw)
    # Ownership of the vec's copy moves into the config.
    ffi.wasi_config_set_stdin_bytes(config.ptr(), ctypes.byref(vec))


def _guest_write(caller: wasmtime.Caller, ptr: int, data: bytes) -> bool:
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        return False
    if ptr < 0 or ptr + len(data) > memory.data_len(caller):
        return False
    memory.write(caller, data, ptr)
    return True


def install_determinism(linker: wasmtime.Linker, policy: SandboxPolicy) -> None:
    """Shadow WASI clock/random imports per the policy (no-op when neither is requested)."""
    if policy.virtual_clock is None and policy.random_seed is None:
        return
    linker.allow_shadowing = True
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    if policy.virtual_clock is not None:
        clock = policy.virtual_clock
        now = [clock.start_ns]

        def clock_time_get(caller: wasmtime.Caller, _id: int, _prec: int, out: int) -> int:
            value = now[0]
            now[0] += clock.step_ns
            return (
                ERRNO_SUCCESS
                if _guest_write(caller, out, struct.pack("<Q", value))
                else ERRNO_FAULT
            )

        def clock_res_get(caller: wasmtime.Caller, _id: int, out: int) -> int:
            ok = _guest_write(caller, out, struct.pack("<Q", clock.step_ns))
            return ERRNO_SUCCESS if ok else ERRNO_FAULT

        _define(linker, "clock_time_get", [i32, i64, i32], clock_time_get)
        _define(linker, "clock_res_get", [i32, i32], clock_res_get)
    if policy.random_seed is not None:
        rng = random.Random(policy.random_seed)

        def random_get(caller: wasmtime.Caller, buf: int, length: int) -> int:
            if length < 0:
                return ERRNO_INVAL
            return (
                ERRNO_SUCCESS if _guest_write(caller, buf, rng.randbytes(length)) else ERRNO_FAULT
            )

        _define(linker, "random_get", [i32, i32], random_get)


def _define(
    linker: wasmtime.Linker,
    name: str,
    params: list[wasmtime.ValType],
    func: Callable[..., int],
) -> None:
    ty = wasmtime.FuncType(params, [wasmtime.ValType.i32()])
    linker.define_func(WASI_MODULE, name, ty, func, access_caller=True)
