"""The raw call path: Python->Wasm and Wasm->Python without per-call type building.

wasmtime-py's generic `Func.__call__` asks the engine for the function type, builds `Val`s and
converts every argument on every call (tens of microseconds). The C API also has *unchecked*
entry points that take one `wasmtime_val_raw_t` array holding the arguments on the way in and the
results on the way out, with no type information at all:

- `wasmtime_func_call_unchecked(context, func, args_and_results, len, trap_out)`;
- `wasmtime_func_new_unchecked(context, functype, callback, env, finalizer, func_out)`, whose
  callback receives the same kind of array.

Passing a wrongly typed value there is undefined behaviour, so all checking happens once, at bind
time: the function's real type is read, only i32/i64/f32/f64 are accepted, and a small call
function specialised to that exact signature is generated (`exec`, like `dataclasses` does), with
a preallocated array and typed ctypes views over it. Arguments are converted the way C converts
them (ints wrap modulo 2^32 or 2^64); a non-number raises `TypeError` before the call.

Everything here depends on wasmtime-py internals (`wasmtime._ffi`, `Func._func`,
`wasmtime._func.LAST_EXCEPTION`), so it is enabled only for the wasmtime version it was verified
against; otherwise, or when `REMORA_WASM_FASTCALL=0`, `bind_call`/`define_host_func` return the
generic path with the same interface.
"""

from __future__ import annotations

import ctypes
import os
import struct
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import _func as wasmtime_func_module

from remora.wasm.engine import WASMTIME_VERSION
from remora.wasm.errors import BindingError
from remora.wasm.runner import Guest

VERIFIED_WASMTIME_VERSIONS = frozenset({"50.0.1"})
_RAW_SIZE = ctypes.sizeof(ffi.wasmtime_val_raw_t)
_KINDS = ("i32", "i64", "f32", "f64")
# Slot layout inside one 16-byte raw value, per kind: (typed view name, elements per slot).
_VIEW = {"i32": ("v_i32", _RAW_SIZE // 4), "i64": ("v_i64", _RAW_SIZE // 8),
         "f32": ("v_f32", _RAW_SIZE // 4), "f64": ("v_f64", _RAW_SIZE // 8)}  # fmt: skip
_STRUCT_CODE = {"i32": "i", "i64": "q", "f32": "f", "f64": "d"}


def fastcall_available() -> tuple[bool, str]:
    if os.environ.get("REMORA_WASM_FASTCALL", "1") == "0":
        return False, "disabled by REMORA_WASM_FASTCALL=0"
    if WASMTIME_VERSION not in VERIFIED_WASMTIME_VERSIONS:
        return False, f"wasmtime {WASMTIME_VERSION} is not a verified version"
    if _RAW_SIZE != 16:
        return False, f"unexpected wasmtime_val_raw_t size {_RAW_SIZE}"
    return True, "enabled"


def _kinds(types: Sequence[wasmtime.ValType], where: str) -> tuple[str, ...]:
    kinds = tuple(str(t) for t in types)
    for kind in kinds:
        if kind not in _KINDS:
            raise BindingError(f"{where}: value type {kind} is not supported by the raw call path")
    return kinds


# A private handle on the C function, so its argtypes/restype are ours (plain addresses as ints)
# and never disturb the package's own binding of the same symbol.
_call_unchecked = ffi.dll["wasmtime_func_call_unchecked"]
_call_unchecked.argtypes = [
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
]  # fmt: skip
_call_unchecked.restype = ctypes.c_void_p


Translate = Callable[[Exception], Exception]


def _raise_failure(error: int | None, trap_slot: Any, translate: Translate | None) -> None:
    """Turn the C call's error/trap outputs into the exceptions the generic path raises."""
    if error:
        exc: Exception = wasmtime.WasmtimeError._from_ptr(
            ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t))
        )
    else:
        trap = trap_slot[0]
        trap_slot[0] = 0
        exc = wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
    # A Python host function that raised left its exception here (the generic path does this).
    wasmtime_func_module.maybe_raise_last_exn()
    if translate is not None and not isinstance(exc, wasmtime.ExitTrap):
        raise translate(exc) from None
    raise exc


class FastFunc:
    """A guest export bound for raw calls. Call it like a function: `add(1, 2)`."""

    def __init__(
        self, store: wasmtime.Store, func: wasmtime.Func, translate: Translate | None = None
    ) -> None:
        ty = func.type(store)
        self._translate = translate
        self.params = _kinds(ty.params, "params")
        self.results = _kinds(ty.results, "results")
        self._store = store  # keeps the context pointer valid
        self._func = func
        slots = max(1, len(self.params), len(self.results))
        self._buf = (ctypes.c_uint8 * (_RAW_SIZE * slots))()
        self._trap_slot = (ctypes.c_size_t * 1)()
        # The specialised function itself; `__call__` adds one Python frame on top of it.
        self.call: Callable[..., Any] = self._build(slots)

    def _build(self, slots: int) -> Callable[..., Any]:
        ns: dict[str, Any] = {
            "v_i32": (ctypes.c_int32 * (slots * 4)).from_buffer(self._buf),
            "v_i64": (ctypes.c_int64 * (slots * 2)).from_buffer(self._buf),
            "v_f32": (ctypes.c_float * (slots * 4)).from_buffer(self._buf),
            "v_f64": (ctypes.c_double * (slots * 2)).from_buffer(self._buf),
            "call": _call_unchecked,
            "ctx": ctypes.cast(self._store._context(), ctypes.c_void_p).value,
            "func": ctypes.addressof(self._func._func),
            "buf": ctypes.addressof(self._buf),
            "nslots": slots,
            "trap_slot": self._trap_slot,
            "trap_addr": ctypes.addressof(self._trap_slot),
            "fail": lambda error, slot: _raise_failure(error, slot, self._translate),
        }
        args = [f"a{i}" for i in range(len(self.params))]
        body = [f"def fast_call({', '.join(args)}):"]
        for i, kind in enumerate(self.params):
            view, per = _VIEW[kind]
            body.append(f"    {view}[{i * per}] = a{i}")
        body.append("    error = call(ctx, func, buf, nslots, trap_addr)")
        body.append("    if error or trap_slot[0]:")
        body.append("        fail(error, trap_slot)")
        outs = [f"{_VIEW[k][0]}[{i * _VIEW[k][1]}]" for i, k in enumerate(self.results)]
        if not outs:
            body.append("    return None")
        elif len(outs) == 1:
            body.append(f"    return {outs[0]}")
        else:
            body.append(f"    return [{', '.join(outs)}]")
        exec("\n".join(body), ns)
        fast_call: Callable[..., Any] = ns["fast_call"]
        return fast_call

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)


class GenericFunc:
    """The same interface over wasmtime-py's generic `Func.__call__` (the path when disabled)."""

    def __init__(
        self, store: wasmtime.Store, func: wasmtime.Func, translate: Translate | None = None
    ) -> None:
        ty = func.type(store)
        self.params = tuple(str(t) for t in ty.params)
        self.results = tuple(str(t) for t in ty.results)
        self._store = store
        self._func = func
        self._translate = translate

    def call(self, *args: Any) -> Any:
        try:
            return self._func(self._store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            if self._translate is None or isinstance(exc, wasmtime.ExitTrap):
                raise
            raise self._translate(exc) from None

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)


def bind_call(
    store: wasmtime.Store,
    func: wasmtime.Func,
    fast: bool | None = None,
    translate: Translate | None = None,
) -> FastFunc | GenericFunc:
    """Bind `func` for repeated calls; `fast=None` means "raw path if available"."""
    if fast is None:
        fast = fastcall_available()[0]
    return FastFunc(store, func, translate) if fast else GenericFunc(store, func, translate)


def bind_export(guest: Guest, name: str, fast: bool | None = None) -> FastFunc | GenericFunc:
    """Bind a guest export; failures become remora's typed errors (limits, `GuestTrap`)."""

    def translate(exc: Exception) -> Exception:
        assert isinstance(exc, wasmtime.Trap | wasmtime.WasmtimeError)
        return guest.translate(exc)

    return bind_call(guest.store, guest.func(name), fast, translate)


# --- Wasm -> Python ------------------------------------------------------------------------------

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a NULL function pointer
# Callbacks must outlive every call the store can make; tie them to the store's lifetime.
_KEEP_ALIVE: weakref.WeakKeyDictionary[wasmtime.Store, list[Any]] = weakref.WeakKeyDictionary()


def _trap_for(exc: BaseException, name: str) -> int:
    """Park the exception where the call paths re-raise it, and hand wasmtime a trap instead."""
    # Same slot and same BaseException breadth as wasmtime-py's own trampoline.
    wasmtime_func_module.LAST_EXCEPTION = exc  # type: ignore[assignment]
    trap = wasmtime.Trap(f"python exception in host function {name}")._consume()
    return int(ctypes.cast(trap, ctypes.c_void_p).value or 0)


def _with_caller(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Prepend a `wasmtime.Caller` (valid only during the call) to the raw callback's args."""
    caller_ptr = ctypes.POINTER(ffi.wasmtime_caller_t)

    def call(caller_addr: int, *args: Any) -> Any:
        caller = wasmtime.Caller(ctypes.cast(caller_addr, caller_ptr))
        try:
            return fn(caller, *args)
        finally:
            caller._invalidate()

    return call


def _raw_callback(
    name: str,
    params: tuple[str, ...],
    results: tuple[str, ...],
    fn: Callable[..., Any],
    access_caller: bool = False,
) -> Any:
    in_fmt = "<" + "".join(f"{_STRUCT_CODE[k]}{_RAW_SIZE - struct.calcsize(_STRUCT_CODE[k])}x"
                           for k in params)  # fmt: skip
    in_size = _RAW_SIZE * len(params)
    out_struct = [struct.Struct("<" + _STRUCT_CODE[k]) for k in results]
    unpack, string_at, memmove = struct.Struct(in_fmt).unpack, ctypes.string_at, ctypes.memmove

    with_caller = _with_caller(fn) if access_caller else None

    def callback(_env: int | None, caller: int, values: int, _n: int) -> int:
        try:
            if with_caller is not None:
                result = with_caller(
                    caller, *(unpack(string_at(values, in_size)) if params else ())
                )
            else:
                result = fn(*unpack(string_at(values, in_size))) if params else fn()
            if len(out_struct) == 1:
                memmove(values, out_struct[0].pack(result), out_struct[0].size)
            elif out_struct:
                if len(result) != len(out_struct):
                    raise BindingError(f"{name}: returned {len(result)} values")
                for i, (packer, value) in enumerate(zip(out_struct, result, strict=True)):
                    memmove(values + i * _RAW_SIZE, packer.pack(value), packer.size)
            return 0
        except BaseException as exc:
            return _trap_for(exc, name)

    return _CALLBACK_TYPE(callback)


def host_func(
    store: wasmtime.Store,
    ty: wasmtime.FuncType,
    fn: Callable[..., Any],
    name: str = "<host>",
    fast: bool | None = None,
    access_caller: bool = False,
) -> wasmtime.Func:
    """A host function for `store`: raw callback when fast, wasmtime's `Func` otherwise.

    Arguments arrive as plain numbers (after a `wasmtime.Caller` when `access_caller`);
    results are packed as the declared type, so returning a float for an i32 raises inside the
    callback and fails the call, exactly like the generic path.
    """
    if fast is None:
        fast = fastcall_available()[0]
    if not fast:
        return wasmtime.Func(store, ty, fn, access_caller)
    params, results = _kinds(ty.params, f"{name} params"), _kinds(ty.results, f"{name} results")
    callback = _raw_callback(name, params, results, fn, access_caller)
    _KEEP_ALIVE.setdefault(store, []).append(callback)
    raw = ffi.wasmtime_func_t()
    ffi.wasmtime_func_new_unchecked(
        store._context(), ty.ptr(), ctypes.cast(callback, ffi.wasmtime_func_unchecked_callback_t),
        None, _NO_FINALIZER, ctypes.byref(raw),
    )  # fmt: skip
    return wasmtime.Func._from_raw(raw)


def define_host_func(
    linker: wasmtime.Linker,
    store: wasmtime.Store,
    module: str,
    name: str,
    ty: wasmtime.FuncType,
    fn: Callable[..., Any],
    fast: bool | None = None,
    access_caller: bool = False,
) -> None:
    func = host_func(store, ty, fn, f"{module}.{name}", fast, access_caller)
    linker.define(store, module, name, func)
