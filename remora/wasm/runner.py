"""Instantiate modules under a policy and limits, and run WASI commands.

`WasmHost` owns the module cache; `Guest` is one instance in its own store (so limits and the
WASI context are per guest) and must be closed, which also tears down the WASI output callbacks
before interpreter shutdown (wasmtime panics if they outlive the Python callbacks).
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import wasmtime

from remora.wasm.cache import ModuleCache, compile_module
from remora.wasm.engine import EngineConfig, EngineHandle, engine_for
from remora.wasm.errors import GuestTrap, LinkError, ModuleFormatError
from remora.wasm.limits import Limits, translate
from remora.wasm.memguard import MemoryAccount, accounting
from remora.wasm.sandbox import (
    OutputBuffer,
    SandboxPolicy,
    build_wasi,
    install_determinism,
    pending_output_callbacks,
)

# Adds host functions to a linker before instantiation: (linker, store) -> None.
Definer = Callable[[wasmtime.Linker, wasmtime.Store], None]

# wasmtime releases a store's WASI output callbacks on one of its runtime threads, about a
# millisecond after the store is dropped. If that happens while the interpreter is finalizing,
# the thread cannot take the GIL and dies inside Rust ("panic in a function that cannot
# unwind"). So at exit: close every guest still open, then wait (bounded) for the releases.
_LIVE: weakref.WeakSet[Guest] = weakref.WeakSet()
_EXIT_WAIT_SECONDS = 1.0


@atexit.register
def _close_live_guests() -> None:
    for guest in list(_LIVE):
        guest.close()
    gc.collect()
    deadline = time.monotonic() + _EXIT_WAIT_SECONDS
    while pending_output_callbacks() and time.monotonic() < deadline:
        time.sleep(0.001)


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    # How often the guest's memory.grow was refused at Limits.max_memory (it saw -1 each time).
    memory_refusals: int = 0
    # Exported tables that ended at the table element cap (see Guest.tables_at_cap).
    tables_at_cap: tuple[str, ...] = ()


class Guest:
    """One module instance in its own store with a sandbox policy and limits applied."""

    def __init__(
        self,
        handle: EngineHandle,
        module: wasmtime.Module,
        policy: SandboxPolicy,
        limits: Limits,
        definers: Sequence[Definer] = (),
        wasi: bool = True,
        initialize: bool = True,
    ) -> None:
        """`wasi=False` leaves WASI to the definers (a host with its own, such as Proxy-Wasm's);
        `initialize=False` leaves running `_initialize` to the caller, who may need the
        instance's memory first."""
        self.handle = handle
        self.limits = limits
        self.store = wasmtime.Store(handle.engine)
        self.memory_account = MemoryAccount(limits.max_memory)
        self._armed = False
        self._closed = False
        _LIVE.add(self)
        try:
            self.linker = wasmtime.Linker(handle.engine)
            self.stdout: OutputBuffer = OutputBuffer(0)
            self.stderr: OutputBuffer = OutputBuffer(0)
            if wasi:
                context = build_wasi(policy)
                self.stdout, self.stderr = context.stdout, context.stderr
                self.store.set_wasi(context.config)
                self.linker.define_wasi()
                install_determinism(self.linker, policy)
            with accounting(self.memory_account):
                for define in definers:
                    define(self.linker, self.store)
                self._armed = limits.apply(self.store, handle)
                try:
                    self.instance = self.linker.instantiate(self.store, module)
                except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                    raise translate(exc, limits, self.memory_account) from None
        except BaseException:
            self.close()
            raise
        exports = self.instance.exports(self.store)
        memory = exports.get("memory")
        self.memory: wasmtime.Memory | None = (
            memory if isinstance(memory, wasmtime.Memory) else None
        )
        if initialize and isinstance(exports.get("_initialize"), wasmtime.Func):
            # A WASI reactor (library-style module) must run its constructors before any export.
            try:
                self.call("_initialize")
            except BaseException:
                self.close()
                raise

    def func(self, name: str) -> wasmtime.Func:
        item = self.instance.exports(self.store).get(name)
        if not isinstance(item, wasmtime.Func):
            raise LinkError(f"guest has no exported function {name!r}")
        return item

    def call(self, name: str, *args: Any) -> Any:
        """Call an export through wasmtime's generic path, with failures typed."""
        func = self.func(name)
        try:
            return func(self.store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            if isinstance(exc, wasmtime.ExitTrap):
                raise
            raise self.translate(exc) from None

    def translate(self, exc: wasmtime.Trap | wasmtime.WasmtimeError) -> Exception:
        """The typed error for a failure of a call into this guest."""
        return translate(exc, self.limits, self.memory_account, during_call=True)

    def run_start(self) -> int:
        """Run a WASI command's `_start`; its exit code (0 if it returns normally)."""
        try:
            self.call("_start")
        except wasmtime.ExitTrap as exc:
            return int(exc.code)
        return 0

    def tables_at_cap(self) -> tuple[str, ...]:
        """Exported tables holding as many elements as the limits allow.

        wasmtime's store limiter refuses a `table.grow` silently (the guest gets -1, as the spec
        says), so a table found full at the cap is the host's only evidence that the cap may
        have been what the guest ran into. Tables the module does not export are out of reach
        through wasmtime-py and are not listed.
        """
        cap = self.limits.table_element_cap
        if cap is None or self._closed:
            return ()
        exports = self.instance.exports(self.store)
        return tuple(
            name
            for name in exports
            if isinstance(table := exports[name], wasmtime.Table) and table.size(self.store) >= cap
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._armed:
            self.handle.ticker.release()
        self.store.close()

    def __enter__(self) -> Guest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class WasmHost:
    """Compiles (through the cache when given) and instantiates modules.

    Modules are also kept in memory per (engine config, module sha256), up to `memo_size`, so
    instantiating the same module again skips even the disk cache.
    """

    cache: ModuleCache | None = None
    memo_size: int = 32
    _memo: dict[tuple[EngineConfig, bytes], wasmtime.Module] = field(default_factory=dict)

    def load(self, wasm: bytes, limits: Limits, origin: str = "<bytes>") -> EngineModule:
        handle = engine_for(limits.engine_config())
        key = (handle.config, hashlib.sha256(wasm).digest())
        module = self._memo.get(key)
        if module is None:
            if self.cache is None:
                module = compile_module(handle.engine, wasm, origin)
            else:
                module = self.cache.load(handle, wasm, origin)
            if len(self._memo) >= self.memo_size:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = module
        return EngineModule(handle, module)

    def instantiate(
        self,
        wasm: bytes,
        policy: SandboxPolicy | None = None,
        limits: Limits | None = None,
        definers: Sequence[Definer] = (),
        origin: str = "<bytes>",
    ) -> Guest:
        limits = limits or Limits()
        loaded = self.load(wasm, limits, origin)
        return Guest(loaded.handle, loaded.module, policy or SandboxPolicy(), limits, definers)

    def run(
        self,
        wasm: bytes,
        policy: SandboxPolicy | None = None,
        limits: Limits | None = None,
        origin: str = "<bytes>",
    ) -> RunResult:
        """Run a WASI command to completion. Limit breaches and traps raise typed errors."""
        with self.instantiate(wasm, policy, limits, origin=origin) as guest:
            try:
                code = guest.run_start()
            except GuestTrap as exc:
                exc.tables_at_cap = guest.tables_at_cap()
                raise
            return RunResult(
                code,
                guest.stdout.getvalue(),
                guest.stderr.getvalue(),
                guest.stdout.truncated,
                guest.stderr.truncated,
                guest.memory_account.refusals,
                guest.tables_at_cap(),
            )


@dataclass(frozen=True)
class EngineModule:
    handle: EngineHandle
    module: wasmtime.Module


def read_module(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModuleFormatError(f"{path}: cannot read module: {exc.strerror}") from None


__all__ = ["Definer", "Guest", "GuestTrap", "RunResult", "WasmHost", "read_module"]
