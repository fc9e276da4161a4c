"""The WASI preview 1 functions a Proxy-Wasm filter may import, with no filesystem at all.

A filter is not a WASI command: it has no arguments, no files and no sockets, and its output is
the proxy's log. Go (wasip1), TinyGo, Rust and AssemblyScript builds still import a handful of
WASI functions, from `wasi_snapshot_preview1` or the older `wasi_unstable` (same functions, same
numbers for what is used here). So remora defines them itself rather than giving the guest
wasmtime's WASI context:

- `fd_write` to fd 1 logs at info, to fd 2 at error (the spec's rule); any other fd is BADF;
- clocks read the host's; `random_get` is the OS's CSPRNG; `environ_*` expose only the
  plugin's configured `environment_variables`; `args_*` are empty;
- `poll_oneoff` must not block the proxy's event loop: clock subscriptions complete at once;
- `proc_exit` ends the guest (a trap the host reports with the exit code);
- `fd_prestat_get` answers BADF, which ends libc's probe for preopened directories;
- every other WASI function a module names answers NOSYS (52) and never traps.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remora.wasm.proxywasm.abi import LogLevel, WasiErrno
from remora.wasm.proxywasm.memory import OutOfBounds

if TYPE_CHECKING:
    from remora.wasm.proxywasm.vm import PluginVm

WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
M32 = 0xFFFFFFFF
MAX_RANDOM = 1 << 16

SIGNATURES: dict[str, tuple[str, str]] = {
    "fd_write": ("iiii", "i"),
    "fd_prestat_get": ("ii", "i"),
    "fd_prestat_dir_name": ("iii", "i"),
    "fd_fdstat_get": ("ii", "i"),
    "fd_close": ("i", "i"),
    "clock_time_get": ("iIi", "i"),
    "clock_res_get": ("ii", "i"),
    "random_get": ("ii", "i"),
    "environ_sizes_get": ("ii", "i"),
    "environ_get": ("ii", "i"),
    "args_sizes_get": ("ii", "i"),
    "args_get": ("ii", "i"),
    "proc_exit": ("i", ""),
    "sched_yield": ("", "i"),
    "poll_oneoff": ("iiii", "i"),
}

_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, fd_readwrite {nbytes, flags}
_SUBSCRIPTION_SIZE = 48
_EVENTTYPE_CLOCK = 0


class GuestExit(Exception):
    """`proc_exit`: the guest ended itself (an SDK's abort handler does this)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the guest called proc_exit({code})")
        self.code = code


class WasiCalls:
    def __init__(self, vm: PluginVm) -> None:
        self.vm = vm
        env = [f"{k}={v}".encode() + b"\0" for k, v in vm.environment.items()]
        self._environ = env

    def table(self) -> dict[str, Callable[..., Any]]:
        return {name: getattr(self, name) for name in SIGNATURES}

    def fd_write(self, fd: int, iovs: int, count: int, written_out: int) -> int:
        if fd not in (1, 2):
            return WasiErrno.BADF
        memory = self.vm.memory
        try:
            chunks = []
            for i in range(count & M32):
                base = (iovs & M32) + 8 * i
                chunks.append(memory.read(memory.read_u32(base), memory.read_u32(base + 4)))
            data = b"".join(chunks)
            memory.write_u32(written_out & M32, len(data))
        except OutOfBounds:
            return WasiErrno.FAULT
        text = data.decode("utf-8", "replace").rstrip("\n")
        if text:
            self.vm.log(LogLevel.INFO if fd == 1 else LogLevel.ERROR, text)
        return WasiErrno.SUCCESS

    def fd_prestat_get(self, _fd: int, _out: int) -> int:
        return WasiErrno.BADF

    def fd_prestat_dir_name(self, _fd: int, _ptr: int, _size: int) -> int:
        return WasiErrno.BADF

    def fd_fdstat_get(self, fd: int, out: int) -> int:
        if fd not in (1, 2):
            return WasiErrno.BADF
        try:
            # filetype character_device (2), no flags, rights: fd_write (bit 6) only.
            self.vm.memory.write(out & M32, struct.pack("<BxHxxxxQQ", 2, 0, 1 << 6, 0))
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def fd_close(self, _fd: int) -> int:
        return WasiErrno.BADF

    def clock_time_get(self, clock_id: int, _precision: int, out: int) -> int:
        if clock_id == 0:
            now = time.time_ns()
        elif clock_id == 1:
            now = time.monotonic_ns()
        else:
            return WasiErrno.NOTSUP
        try:
            self.vm.memory.write_u64(out & M32, now)
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def clock_res_get(self, clock_id: int, out: int) -> int:
        if clock_id not in (0, 1):
            return WasiErrno.NOTSUP
        try:
            self.vm.memory.write_u64(out & M32, 1000)
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def random_get(self, ptr: int, size: int) -> int:
        size &= M32
        if size > MAX_RANDOM:
            return WasiErrno.INVAL
        try:
            self.vm.memory.write(ptr & M32, os.urandom(size))
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def environ_sizes_get(self, count_out: int, size_out: int) -> int:
        try:
            self.vm.memory.write_u32(count_out & M32, len(self._environ))
            self.vm.memory.write_u32(size_out & M32, sum(len(e) for e in self._environ))
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def environ_get(self, array: int, buffer: int) -> int:
        memory = self.vm.memory
        at = buffer & M32
        try:
            for i, entry in enumerate(self._environ):
                memory.write_u32((array & M32) + 4 * i, at)
                memory.write(at, entry)
                at += len(entry)
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def args_sizes_get(self, count_out: int, size_out: int) -> int:
        try:
            self.vm.memory.write_u32(count_out & M32, 0)
            self.vm.memory.write_u32(size_out & M32, 0)
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS

    def args_get(self, _array: int, _buffer: int) -> int:
        return WasiErrno.SUCCESS

    def proc_exit(self, code: int) -> None:
        raise GuestExit(code & M32)

    def sched_yield(self) -> int:
        return WasiErrno.SUCCESS

    def poll_oneoff(self, subs: int, events: int, count: int, done_out: int) -> int:
        memory = self.vm.memory
        count &= M32
        try:
            out = bytearray()
            for i in range(count):
                sub = memory.read((subs & M32) + _SUBSCRIPTION_SIZE * i, _SUBSCRIPTION_SIZE)
                userdata, tag = struct.unpack_from("<QB", sub)
                # A clock fires at once (sleeping would stall every stream); fd waits fail.
                error = WasiErrno.SUCCESS if tag == _EVENTTYPE_CLOCK else WasiErrno.BADF
                out += _EVENT.pack(userdata, error, tag, 0, 0)
            memory.write(events & M32, bytes(out))
            memory.write_u32(done_out & M32, count)
        except OutOfBounds:
            return WasiErrno.FAULT
        return WasiErrno.SUCCESS
