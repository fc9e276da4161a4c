"""Typed host functions and typed guest exports, declared as annotated Python signatures.

A signature is read once, when declared (`HostModule.function`, `guest_export`), and checked
against the guest's real function type when bound, so a layout or arity mismatch is a
`BindingError` at start-up rather than garbage at run time. Struct pointers arrive in host
functions as zero-copy `StructView`s of the caller's memory.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime

from remora.wasm.abi import (
    Ptr,
    Scalar,
    StructView,
    exported_memory,
    is_wasm_struct,
    spec_from_annotation,
)
from remora.wasm.errors import BindingError, LinkError
from remora.wasm.fastcall import FastFunc, GenericFunc, bind_export, define_host_func
from remora.wasm.runner import Guest

Param = Scalar | Ptr

_VALTYPES: dict[str, Callable[[], wasmtime.ValType]] = {
    "i32": wasmtime.ValType.i32,
    "i64": wasmtime.ValType.i64,
    "f32": wasmtime.ValType.f32,
    "f64": wasmtime.ValType.f64,
}


def wasm_type(spec: Param) -> str:
    return "i32" if isinstance(spec, Ptr) else spec.wasm


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[tuple[str, Param], ...]
    result: Scalar | None

    def wasm_params(self) -> list[str]:
        return [wasm_type(spec) for _, spec in self.params]

    def wasm_results(self) -> list[str]:
        return [] if self.result is None else [self.result.wasm]

    def functype(self) -> wasmtime.FuncType:
        return wasmtime.FuncType(
            [_VALTYPES[t]() for t in self.wasm_params()],
            [_VALTYPES[t]() for t in self.wasm_results()],
        )

    def check_against(self, actual: wasmtime.FuncType) -> None:
        got = ([str(p) for p in actual.params], [str(r) for r in actual.results])
        want = (self.wasm_params(), self.wasm_results())
        if got != want:
            raise BindingError(
                f"{self.name}: declared ({', '.join(want[0])}) -> ({', '.join(want[1])}) but the "
                f"guest has ({', '.join(got[0])}) -> ({', '.join(got[1])})"
            )


def signature_of(fn: Callable[..., Any], name: str | None = None) -> Signature:
    fn_name = name or fn.__name__
    hints = typing.get_type_hints(fn, include_extras=True)
    params: list[tuple[str, Param]] = []
    for pname in inspect.signature(fn).parameters:
        if pname not in hints:
            raise BindingError(f"{fn_name}({pname}): parameter needs an ABI annotation")
        spec = spec_from_annotation(hints[pname], f"{fn_name}({pname})")
        if not isinstance(spec, Scalar | Ptr):
            raise BindingError(f"{fn_name}({pname}): pass structs and arrays by Ptr")
        params.append((pname, spec))
    ret = hints.get("return", type(None))
    result: Scalar | None = None
    if ret is not type(None):
        spec = spec_from_annotation(ret, f"{fn_name} return")
        if not isinstance(spec, Scalar):
            raise BindingError(f"{fn_name}: can only return scalars")
        result = spec
    return Signature(fn_name, tuple(params), result)


def from_wasm(spec: Param, value: Any) -> Any:
    """Wasm values are signed; reinterpret per the declared C type."""
    if isinstance(spec, Ptr):
        return value & 0xFFFFFFFF
    if spec.wasm in ("f32", "f64"):
        return value
    if spec.name == "bool":
        return bool(value)
    bits = spec.size * 8
    value &= (1 << bits) - 1
    if spec.lo < 0 and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def to_wasm(spec: Param, value: Any, where: str) -> Any:
    if isinstance(value, StructView):
        value = value.address
    if isinstance(spec, Ptr):
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise BindingError(f"{where}: {value!r} is not a u32 guest address")
        value = int(value)
    else:
        spec.check(value, where)
        if spec.wasm in ("f32", "f64"):
            return float(value)
        value = int(value)
    bits = 64 if wasm_type(spec) == "i64" else 32
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


class HostModule:
    """Python functions exported into the guest's import namespace `namespace`.

    `fast=None` uses the raw call path (remora.wasm.fastcall) when it is available.
    """

    def __init__(self, namespace: str = "env", fast: bool | None = None) -> None:
        self.namespace = namespace
        self.fast = fast
        self.functions: list[tuple[Signature, Callable[..., Any]]] = []

    def function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.functions.append((signature_of(fn), fn))
        return fn

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        """A `runner.Definer`: add every function to the linker."""
        for sig, fn in self.functions:
            define_host_func(
                linker, store, self.namespace, sig.name, sig.functype(), _adapt(sig, fn),
                fast=self.fast, access_caller=True,
            )  # fmt: skip


def _adapt(sig: Signature, fn: Callable[..., Any]) -> Callable[..., Any]:
    specs = [spec for _, spec in sig.params]
    struct_ptrs = {
        i: spec.target
        for i, spec in enumerate(specs)
        if isinstance(spec, Ptr) and is_wasm_struct(spec.target)
    }

    def call(caller: wasmtime.Caller, *raw: Any) -> Any:
        args = [from_wasm(spec, value) for spec, value in zip(specs, raw, strict=True)]
        if struct_ptrs:
            memory = exported_memory(caller, caller)
            for i, target in struct_ptrs.items():
                args[i] = memory.view(target, args[i])
        result = fn(*args)
        if sig.result is None:
            return None
        return to_wasm(sig.result, result, f"{sig.name} result")

    return call


class GuestExport:
    """A declared guest export; `bind(guest)` checks it against the module's real type."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.signature = signature_of(fn, name)

    def bind(self, guest: Guest, fast: bool | None = None) -> BoundExport:
        func = guest.func(self.signature.name)
        self.signature.check_against(func.type(guest.store))
        return BoundExport(self.signature, bind_export(guest, self.signature.name, fast))


def guest_export(fn: Callable[..., Any]) -> GuestExport:
    return GuestExport(fn)


class BoundExport:
    def __init__(self, sig: Signature, call: FastFunc | GenericFunc) -> None:
        self.signature = sig
        self._call = call.call

    def __call__(self, *args: Any) -> Any:
        sig = self.signature
        if len(args) != len(sig.params):
            raise BindingError(f"{sig.name}: expected {len(sig.params)} arguments, got {len(args)}")
        raw = [
            to_wasm(spec, value, f"{sig.name}({pname})")
            for (pname, spec), value in zip(sig.params, args, strict=True)
        ]
        result = self._call(*raw)
        return None if sig.result is None else from_wasm(sig.result, result)


def bind_all(guest: Guest, exports: Sequence[GuestExport]) -> dict[str, BoundExport]:
    bound = {}
    for export in exports:
        try:
            bound[export.signature.name] = export.bind(guest)
        except LinkError as exc:
            raise BindingError(str(exc)) from None
    return bound
