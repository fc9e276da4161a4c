"""Resource limits for one guest, and the mapping of wasmtime failures onto typed limit errors.

Each limit uses the wasmtime mechanism made for it: the store limiter for table elements and
instances; a host memory creator (`memguard`) for linear memory, so that refusals are counted;
fuel for a deterministic CPU budget; epoch interruption (driven by the engine's ticker thread)
for a wall-clock deadline; `max_wasm_stack` for recursion depth.

Every bound is checked here, before wasmtime sees it: wasmtime's C API panics (aborting the
process) on some values it rejects, such as a `max_wasm_stack` of 0 or above its async stack size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import wasmtime

from remora.wasm.engine import (
    DEFAULT_MAX_WASM_STACK,
    MAX_WASM_STACK_CEILING,
    EngineConfig,
    EngineHandle,
    check_wasm_stack,
)
from remora.wasm.errors import (
    DeadlineExceededError,
    FuelExhaustedError,
    GuestTrap,
    InstanceLimitError,
    LinkError,
    MemoryLimitError,
    StackLimitError,
    TableLimitError,
    WasmError,
    frames_of,
    last_line,
    trap_code_name,
)
from remora.wasm.memguard import REFUSAL_MARKER, MemoryAccount

WASM_PAGE = 65536
# Relative epoch deadline meaning "never" for stores without a timeout on an epoch-enabled engine.
_NO_DEADLINE = 1 << 62
# The store limiter's default in wasmtime's own Rust API: tables are host memory the guest can
# grow with one instruction, so they are capped even when the caller sets no limit.
DEFAULT_MAX_TABLE_ELEMENTS = 10_000
# Host bytes per table element (a funcref is a pointer; GC references are smaller), used to
# charge tables against max_memory.
TABLE_ELEMENT_BYTES = 8
# Far below the ~2.3e16 s that epoch deadlines in 5 ms ticks can represent, and still 31 years.
MAX_TIMEOUT_SECONDS = 1e9

__all__ = [
    "DEFAULT_MAX_TABLE_ELEMENTS",
    "DEFAULT_MAX_WASM_STACK",
    "MAX_TIMEOUT_SECONDS",
    "MAX_WASM_STACK_CEILING",
    "Limits",
    "check_timeout",
    "check_wasm_stack",
    "translate",
]


def check_timeout(seconds: float) -> None:
    """Raise ValueError unless `seconds` is a deadline epoch interruption can arm."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise ValueError(f"expected seconds, got {seconds!r}")
    if not math.isfinite(seconds) or not seconds > 0:
        raise ValueError(f"expected a finite number of seconds > 0, got {seconds!r}")
    if seconds > MAX_TIMEOUT_SECONDS:
        raise ValueError(f"at most {MAX_TIMEOUT_SECONDS:g} seconds, got {seconds!r}")


@dataclass(frozen=True)
class Limits:
    max_memory: int | None = None
    fuel: int | None = None
    timeout: float | None = None
    max_wasm_stack: int | None = None
    # Per table; None lifts the cap (the table's own maximum still applies).
    max_table_elements: int | None = DEFAULT_MAX_TABLE_ELEMENTS
    max_instances: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_memory", "fuel", "max_wasm_stack", "max_table_elements", "max_instances"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"Limits.{name}: expected a non-negative int, got {value!r}")
        if self.fuel is not None and self.fuel >= 1 << 64:
            raise ValueError(f"Limits.fuel: at most 2**64 - 1, got {self.fuel}")
        if self.max_wasm_stack is not None:
            try:
                check_wasm_stack(self.max_wasm_stack)
            except ValueError as exc:
                raise ValueError(f"Limits.max_wasm_stack: {exc}") from None
        if self.timeout is not None:
            try:
                check_timeout(self.timeout)
            except ValueError as exc:
                raise ValueError(f"Limits.timeout: {exc}") from None

    @property
    def table_element_cap(self) -> int | None:
        """Elements one table may hold: max_table_elements, and within max_memory's bytes."""
        caps = [self.max_table_elements]
        if self.max_memory is not None:
            caps.append(self.max_memory // TABLE_ELEMENT_BYTES)
        known = [cap for cap in caps if cap is not None]
        return min(known) if known else None

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            consume_fuel=self.fuel is not None,
            epoch_interruption=self.timeout is not None,
            max_wasm_stack=self.max_wasm_stack,
            host_memory=self.max_memory is not None,
        )

    def apply(self, store: wasmtime.Store, handle: EngineHandle) -> bool:
        """Configure `store`; returns True when a deadline was armed (caller must `disarm`)."""
        # On host-memory engines memguard enforces the memory cap itself, so that it can count
        # refusals; the store limiter would refuse first and silently.
        memory_cap = self.max_memory
        if memory_cap is None or handle.config.host_memory:
            memory_cap = -1
        store.set_limits(
            memory_size=memory_cap,
            table_elements=-1 if self.table_element_cap is None else self.table_element_cap,
            instances=-1 if self.max_instances is None else self.max_instances,
        )
        if self.fuel is not None:
            store.set_fuel(self.fuel)
        if handle.config.epoch_interruption:
            if self.timeout is None:
                store.set_epoch_deadline(_NO_DEADLINE)
                return False
            store.set_epoch_deadline(handle.ticker.ticks_for(self.timeout))
            handle.ticker.acquire()
            return True
        return False


def translate(
    exc: wasmtime.WasmtimeError | wasmtime.Trap,
    limits: Limits,
    memory: MemoryAccount | None = None,
    during_call: bool = False,
) -> WasmError:
    """The typed remora error for a wasmtime failure during instantiation or a call.

    `memory` is the guest's memory account: once a `memory.grow` was refused at the cap, a trap
    that is not itself another limit is the guest dying of the memory limit (typically C's
    `abort()` after `malloc` returned NULL). `during_call` marks failures of a running guest
    that are not traps (e.g. `proc_exit` with a status WASI does not allow): those are the
    guest's fault, not a link failure.
    """
    if isinstance(exc, wasmtime.Trap):
        message, code, frames = last_line(exc.message), trap_code_name(exc), frames_of(exc)
        if code == "OUT_OF_FUEL":
            return FuelExhaustedError(message, limits.fuel, code, frames)
        if code == "INTERRUPT":
            return DeadlineExceededError(message, limits.timeout, code, frames)
        if code == "STACK_OVERFLOW":
            if limits.max_wasm_stack is None:
                return StackLimitError(message, DEFAULT_MAX_WASM_STACK, code, frames, default=True)
            return StackLimitError(message, limits.max_wasm_stack, code, frames)
        if memory is not None and memory.hit:
            return MemoryLimitError(_refused(message, memory), limits.max_memory, code, frames)
        return GuestTrap(message, code, frames)
    message = last_line(str(exc))
    if "exceeds memory limits" in message or REFUSAL_MARKER in message:
        return MemoryLimitError(message, limits.max_memory)
    if "exceeds table limits" in message:
        return TableLimitError(message, limits.table_element_cap)
    if "instance count too high" in message:
        return InstanceLimitError(message, limits.max_instances)
    if during_call:
        return GuestTrap(message, None, ())
    return LinkError(message)


def _refused(message: str, memory: MemoryAccount) -> str:
    times = "once" if memory.refusals == 1 else f"{memory.refusals} times"
    return f"{message} (after memory.grow to {memory.last_refused} bytes was refused {times})"
