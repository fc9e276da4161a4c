"""Typed failures of the Wasm host.

wasmtime reports everything as `WasmtimeError` or `Trap` with a message string. Callers of
remora need to tell "the guest ran out of its CPU budget" from "the module is corrupt" without
parsing text, so each limit gets its own class under `WasmLimitError`, and `limits.translate()` is
the one place that maps wasmtime's failures (trap codes first, message text only where wasmtime
offers nothing better).
"""

from __future__ import annotations

from dataclasses import dataclass

import wasmtime

_NO_OFFSET = (1 << 64) - 1


class WasmError(Exception):
    """Base of every error raised by remora.wasm."""


class ModuleFormatError(WasmError):
    """The module bytes are not a valid WebAssembly module (names the file/offset when known)."""


class CacheError(WasmError):
    """The on-disk module cache could not be used (never raised for a plain cache miss)."""


class LinkError(WasmError):
    """Instantiation failed for a reason other than a resource limit (e.g. a missing import)."""


class BindingError(WasmError):
    """A typed binding does not match the guest's actual signature or layout."""


class StaleViewError(WasmError):
    """A struct view was used after the linear memory it points into moved or shrank."""


@dataclass(frozen=True)
class TrapFrame:
    """One guest stack frame of a trap backtrace."""

    func_index: int
    func_name: str | None
    module_name: str | None
    module_offset: int

    def __str__(self) -> str:
        name = self.func_name or f"func[{self.func_index}]"
        where = f"{self.module_name or '<module>'}!{name}"
        # wasmtime reports usize::MAX when the frame has no known offset (e.g. the frame that
        # overflowed the stack in its prologue).
        return where if self.module_offset >= _NO_OFFSET else f"{where}+0x{self.module_offset:x}"


class GuestTrap(WasmError):
    """The guest trapped. Carries wasmtime's trap code (or None) and the guest backtrace."""

    def __init__(self, message: str, code: str | None, frames: tuple[TrapFrame, ...]) -> None:
        super().__init__(message)
        self.code = code
        self.frames = frames
        # Exported tables found full at the element cap when the guest stopped: a table.grow
        # refused there returned -1 without a trace, and may be why the guest then failed.
        self.tables_at_cap: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"{self.args[0]} (trap code {self.code})"]
        lines.extend(f"  at {frame}" for frame in self.frames)
        return "\n".join(lines)


class WasmLimitError(GuestTrap):
    """A resource limit stopped the guest. `limit` names it; `value` is the configured bound."""

    limit: str = "unknown"

    def __init__(
        self,
        message: str,
        value: float | None,
        code: str | None = None,
        frames: tuple[TrapFrame, ...] = (),
        default: bool = False,
    ) -> None:
        super().__init__(message, code, frames)
        self.value = value
        # The caller set no bound and `value` is the engine's default that applied instead.
        self.default = default

    def __str__(self) -> str:
        bound = f"{self.value}, the default" if self.default else f"{self.value}"
        head = f"{self.limit} limit ({bound}) exceeded: {self.args[0]}"
        return "\n".join([head, *(f"  at {frame}" for frame in self.frames)])


class FuelExhaustedError(WasmLimitError):
    limit = "fuel"


class DeadlineExceededError(WasmLimitError):
    limit = "timeout"


class MemoryLimitError(WasmLimitError):
    limit = "max_memory"


class StackLimitError(WasmLimitError):
    limit = "max_wasm_stack"


class TableLimitError(WasmLimitError):
    limit = "max_table_elements"


class InstanceLimitError(WasmLimitError):
    limit = "max_instances"


def frames_of(trap: wasmtime.Trap) -> tuple[TrapFrame, ...]:
    return tuple(
        TrapFrame(f.func_index, f.func_name, f.module_name, f.module_offset) for f in trap.frames
    )


def trap_code_name(trap: wasmtime.Trap) -> str | None:
    code = trap.trap_code
    return None if code is None else str(code.name)


def last_line(message: str) -> str:
    """wasmtime messages embed a backtrace; the cause is the last non-empty line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else message
