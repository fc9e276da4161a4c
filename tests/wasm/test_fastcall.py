from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import wasmtime

from remora.wasm.errors import BindingError, FuelExhaustedError, GuestTrap
from remora.wasm.fastcall import (
    FastFunc,
    GenericFunc,
    bind_call,
    bind_export,
    define_host_func,
    fastcall_available,
)
from remora.wasm.limits import Limits
from remora.wasm.runner import Guest, WasmHost

I32, I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
BOTH = pytest.mark.parametrize("fast", [False, True], ids=["generic", "fast"])


class HostError(Exception):
    pass


def host_add(fast: bool) -> Callable[[wasmtime.Linker, wasmtime.Store], None]:
    def define(linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        ty = wasmtime.FuncType([I32, I32], [I32])
        define_host_func(linker, store, "host", "add", ty, lambda a, b: a + b, fast)

    return define


def multi_hosts(fast: bool) -> Callable[[wasmtime.Linker, wasmtime.Store], None]:
    def fail(x: int) -> int:
        if x == 13:
            raise HostError("unlucky")
        if x == 14:
            return 1.5  # type: ignore[return-value]  # wrong type for an i32 result
        return x

    def define(linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        divmod_ty = wasmtime.FuncType([I32, I32], [I32, I32])
        define_host_func(
            linker, store, "host", "divmod", divmod_ty, lambda a, b: divmod(a, b), fast
        )
        define_host_func(linker, store, "host", "fail", wasmtime.FuncType([I32], [I32]), fail, fast)

    return define


@pytest.fixture(params=[False, True], ids=["generic-host", "fast-host"])
def compute(request: pytest.FixtureRequest, guest: Callable[[str], bytes]) -> Iterator[Guest]:
    with WasmHost().instantiate(guest("compute"), definers=[host_add(request.param)]) as g:
        yield g


@pytest.fixture(params=[False, True], ids=["generic-host", "fast-host"])
def multi(request: pytest.FixtureRequest, guest: Callable[[str], bytes]) -> Iterator[Guest]:
    with WasmHost().instantiate(guest("multi"), definers=[multi_hosts(request.param)]) as g:
        yield g


def both(g: Guest, name: str) -> tuple[Any, Any]:
    return bind_call(g.store, g.func(name), False), bind_call(g.store, g.func(name), True)


def test_available_for_pinned_wasmtime() -> None:
    assert fastcall_available() == (True, "enabled")


def test_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, compute: Guest) -> None:
    monkeypatch.setenv("REMORA_WASM_FASTCALL", "0")
    assert fastcall_available()[0] is False
    assert isinstance(bind_call(compute.store, compute.func("add")), GenericFunc)
    monkeypatch.delenv("REMORA_WASM_FASTCALL")
    assert isinstance(bind_call(compute.store, compute.func("add")), FastFunc)


EDGE_I32 = [0, 1, -1, 2**31 - 1, -(2**31), 12345, -98765]


def test_i32_results_match(compute: Guest) -> None:
    generic, fast = both(compute, "add")
    for a in EDGE_I32:
        for b in EDGE_I32:
            assert fast(a, b) == generic(a, b), (a, b)
    assert fast(2**31 - 1, 1) == -(2**31)  # wraps like the guest's i32.add


def test_mixed_types_match(compute: Guest) -> None:
    generic, fast = both(compute, "mix")
    for args in [(0, 0.0, 0.0), (2**62, 1.5, -0.25), (-(2**63), -3.0e38, 1e308), (7, 0.1, 0.2)]:
        assert fast(*args) == generic(*args)
    assert math.isnan(fast(0, math.nan, 1.0)) and math.isnan(generic(0, math.nan, 1.0))


def test_host_calls_match(compute: Guest) -> None:
    generic, fast = both(compute, "call_host_n")
    assert fast(1000) == generic(1000) == 1000
    g2, f2 = both(compute, "call_host")
    assert f2(40, 2) == g2(40, 2) == 42


def test_multi_value_both_directions(multi: Guest) -> None:
    generic, fast = both(multi, "swap")
    assert fast(-7, 2**40) == generic(-7, 2**40) == [2**40, -7]
    generic, fast = both(multi, "via_host")
    assert fast(17, 5) == generic(17, 5) == 3 - 2
    generic, fast = both(multi, "nothing")
    assert fast() is None and generic() is None


def test_traps_propagate_identically(compute: Guest) -> None:
    generic, fast = both(compute, "div")
    codes = []
    for call in (generic, fast):
        with pytest.raises(wasmtime.Trap) as info:
            call(1, 0)
        codes.append((info.value.trap_code, [f.func_name for f in info.value.frames]))
    assert codes[0] == codes[1] == (wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO, ["div"])
    assert fast(9, 3) == 3  # the path is reusable after a trap


def test_host_exception_propagates(multi: Guest) -> None:
    generic, fast = both(multi, "call_fail")
    for call in (generic, fast):
        with pytest.raises(HostError, match="unlucky"):
            call(13)
        assert call(5) == 5


def test_host_wrong_result_type_fails_the_call(multi: Guest) -> None:
    generic, fast = both(multi, "call_fail")
    for call in (generic, fast):
        with pytest.raises(Exception) as info:
            call(14)
        assert not isinstance(info.value, wasmtime.Trap)


def test_bad_argument_type_is_rejected_before_the_call(compute: Guest) -> None:
    generic, fast = both(compute, "add")
    for call in (generic, fast):
        with pytest.raises(TypeError):
            call("1", 2)


def test_reference_types_refused_at_bind(multi: Guest) -> None:
    with pytest.raises(BindingError, match=r"value type .* is not supported by the raw call path"):
        bind_call(multi.store, multi.func("takes_ref"), True)


@BOTH
def test_bind_export_types_failures(guest: Callable[[str], bytes], fast: bool) -> None:
    limits = Limits(fuel=100_000)
    with WasmHost().instantiate(guest("compute"), limits=limits, definers=[host_add(fast)]) as g:
        with pytest.raises(FuelExhaustedError):
            bind_export(g, "spin", fast)()
        g.store.set_fuel(100_000)  # fuel is per store; the spin used it all up
        with pytest.raises(GuestTrap) as info:
            bind_export(g, "div", fast)(1, 0)
        assert info.value.code == "INTEGER_DIVISION_BY_ZERO"


@BOTH
def test_reentrant_calls_through_the_same_binding(
    guest: Callable[[str], bytes], fast: bool
) -> None:
    """call_host -> host add -> call_host -> ...: one FastFunc buffer re-entered 50 deep."""
    bound: list[Any] = []

    def add(a: int, b: int) -> int:
        return bound[0](a - 1, b) + 1 if a > 0 else b

    def define(linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        ty = wasmtime.FuncType([I32, I32], [I32])
        define_host_func(linker, store, "host", "add", ty, add, fast)

    with WasmHost().instantiate(guest("compute"), definers=[define]) as g:
        bound.append(bind_call(g.store, g.func("call_host"), fast))
        assert bound[0](50, 1000) == 1050
