from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import wasmtime

from remora.wasm.engine import engine_for
from remora.wasm.errors import (
    DeadlineExceededError,
    FuelExhaustedError,
    GuestTrap,
    InstanceLimitError,
    MemoryLimitError,
    StackLimitError,
    TableLimitError,
    WasmLimitError,
)
from remora.wasm.fastcall import bind_export
from remora.wasm.limits import Limits
from remora.wasm.memguard import live_regions
from remora.wasm.runner import Definer, WasmHost
from remora.wasm.sandbox import SandboxPolicy


@pytest.fixture(scope="module")
def host() -> WasmHost:
    return WasmHost()


def host_add() -> Definer:
    def define(linker: wasmtime.Linker, _store: wasmtime.Store) -> None:
        i32 = wasmtime.ValType.i32()
        linker.define_func("host", "add", wasmtime.FuncType([i32, i32], [i32]), lambda a, b: a + b)

    return define


@pytest.fixture
def healthy(host: WasmHost, guest: Callable[[str], bytes]) -> Iterator[None]:
    """After each limit test the host can still run a guest normally."""
    yield
    with host.instantiate(guest("compute"), definers=[host_add()]) as g:
        assert g.call("add", 2, 3) == 5


@pytest.mark.usefixtures("healthy")
def test_infinite_loop_stopped_by_fuel(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    with pytest.raises(FuelExhaustedError) as info:
        host.run(guest("spin"), limits=Limits(fuel=5_000_000))
    err = info.value
    assert (err.limit, err.value, err.code) == ("fuel", 5_000_000, "OUT_OF_FUEL")
    assert any(f.func_name == "__original_main" for f in err.frames)
    assert isinstance(err, WasmLimitError)


@pytest.mark.usefixtures("healthy")
def test_infinite_loop_stopped_by_deadline(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceededError) as info:
        host.run(guest("spin"), limits=Limits(timeout=0.15))
    elapsed = time.monotonic() - t0
    assert 0.15 <= elapsed < 1.5
    assert (info.value.limit, info.value.code) == ("timeout", "INTERRUPT")


def test_deadline_ticker_stops_when_idle(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    limits = Limits(timeout=5)
    with host.instantiate(guest("compute"), limits=limits, definers=[host_add()]) as g:
        assert g.call("add", 1, 1) == 2
        assert g.handle.ticker.running
    deadline = time.monotonic() + 1
    while g.handle.ticker.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not g.handle.ticker.running


def test_deadline_fires_when_reacquired_right_after_release(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    """Release-then-acquire must not leave a deadline without a ticker (fuel is the backstop)."""
    limits = Limits(timeout=0.05, fuel=20_000_000_000)
    for _ in range(20):
        with host.instantiate(guest("compute"), limits=limits, definers=[host_add()]):
            pass
        with (
            host.instantiate(guest("compute"), limits=limits, definers=[host_add()]) as g,
            pytest.raises(DeadlineExceededError),
        ):
            g.call("spin")


def test_deadline_and_fuel_on_wat_export(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    limits = Limits(fuel=10_000, timeout=0.1)
    with (
        host.instantiate(guest("compute"), limits=limits, definers=[host_add()]) as g,
        pytest.raises(FuelExhaustedError),
    ):
        g.call("spin")


@pytest.mark.usefixtures("healthy")
def test_memory_bomb_stops_at_cap_inside_guest(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    """malloc returns NULL at the cap; the C guest reports how far it got and exits cleanly."""
    result = host.run(guest("membomb"), limits=Limits(max_memory=16 << 20))
    blocks = int(result.stdout.split(b"blocks=")[1].split()[0])
    assert 8 <= blocks < 16


@pytest.mark.usefixtures("healthy")
def test_memory_bomb_that_traps_is_a_memory_limit_error(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    with host.instantiate(guest("grow_bomb"), limits=Limits(max_memory=4 << 20)) as g:
        with pytest.raises(MemoryLimitError) as info:
            g.call("bomb")
        assert info.value.code == "UNREACHABLE"
        assert g.memory is not None
        assert g.memory.data_len(g.store) == 4 << 20


def test_memory_grow_fails_in_guest(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    with host.instantiate(guest("grow_bomb"), limits=Limits(max_memory=1 << 20)) as g:
        assert g.memory_account.refusals == 0
        assert g.call("grow_until_refused") == 15  # 1 initial page + 15 = 16 pages = 1 MiB
        # The guest saw -1 and carried on; the host still knows the cap was hit, and where.
        assert (g.memory_account.refusals, g.memory_account.last_refused) == (1, 17 * 65536)


@pytest.mark.usefixtures("healthy")
def test_big_refused_grow_far_below_cap_is_a_memory_limit_error(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    """One 64-page request at 1 page of a 16-page cap: refused far from the cap, then abort."""
    with host.instantiate(guest("grow_bomb"), limits=Limits(max_memory=1 << 20)) as g:
        assert g.call("grow_or_trap", 3) == 4
        with pytest.raises(MemoryLimitError) as info:
            g.call("grow_or_trap", 64)
        assert g.memory is not None and g.memory.data_len(g.store) == 4 * 65536
    err = info.value
    assert (err.limit, err.value, err.code) == ("max_memory", 1 << 20, "UNREACHABLE")
    assert f"memory.grow to {68 * 65536} bytes was refused once" in str(err)
    assert [f.func_name for f in err.frames] == ["grow_or_trap"]


@pytest.mark.parametrize("fast", [False, True], ids=["generic", "fast"])
def test_unrelated_trap_at_the_cap_is_not_blamed_on_memory(
    host: WasmHost, guest: Callable[[str], bytes], fast: bool
) -> None:
    """Memory full but nothing refused: a division by zero stays a plain GuestTrap."""
    with host.instantiate(guest("grow_bomb"), limits=Limits(max_memory=1 << 20)) as g:
        with pytest.raises(GuestTrap) as info:
            bind_export(g, "grow_then_divide", fast)(15)
        assert g.memory is not None and g.memory.data_len(g.store) == 1 << 20
    assert not isinstance(info.value, MemoryLimitError)
    assert info.value.code == "INTEGER_DIVISION_BY_ZERO"


def test_memory_bomb_refusals_are_reported(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    capped = host.run(guest("membomb"), limits=Limits(max_memory=16 << 20))
    assert capped.exit_code == 0 and capped.memory_refusals >= 1
    plain = host.run(guest("hello"), limits=Limits(max_memory=16 << 20))
    assert plain.memory_refusals == 0


def test_host_memories_are_released_with_their_guest(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    before = live_regions()
    guests = [host.instantiate(guest("grow_bomb"), limits=Limits(max_memory=1 << 20))]
    guests.append(host.instantiate(guest("hello"), limits=Limits(max_memory=4 << 20)))
    assert live_regions() == before + 2
    for g in guests:
        g.close()
    assert live_regions() == before


def test_memory_outside_the_instance_window_has_no_account() -> None:
    """Documented edge: a store on a host-memory engine used without `Guest` is not capped."""
    handle = engine_for(Limits(max_memory=65536).engine_config())
    store = wasmtime.Store(handle.engine)
    memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(1, None)))
    assert memory.grow(store, 3) == 1
    memory.write(store, b"ok", 4 * 65536 - 2)
    assert memory.read(store, 4 * 65536 - 2, 4 * 65536) == b"ok"
    store.close()


def test_invalid_exit_status_is_a_guest_trap(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    """WASI allows exit statuses 0..125; wasmtime fails the call otherwise. The guest did that."""
    with pytest.raises(GuestTrap, match=r"exit status outside of \[0\.\.126\)") as info:
        host.run(guest("hello"), SandboxPolicy(args=("hello", "200")))
    assert not isinstance(info.value, WasmLimitError)


def test_memory_cap_below_module_minimum(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    before = live_regions()
    with pytest.raises(MemoryLimitError, match=r"max_memory limit .* 65536 bytes exceeds"):
        host.instantiate(guest("grow_bomb"), limits=Limits(max_memory=1000))
    assert live_regions() == before


@pytest.mark.usefixtures("healthy")
def test_deep_recursion_stopped_at_stack_cap(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    limits = Limits(max_wasm_stack=64 * 1024)
    with (
        host.instantiate(guest("compute"), limits=limits, definers=[host_add()]) as g,
        pytest.raises(StackLimitError) as info,
    ):
        g.call("recurse", 0)
    err = info.value
    assert (err.limit, err.value, err.code) == ("max_wasm_stack", 64 * 1024, "STACK_OVERFLOW")
    assert len(err.frames) > 10
    assert all(f.func_name == "recurse" for f in err.frames)
    assert "0xffffffffffffffff" not in str(err)  # the overflowing frame has no known offset


def test_table_elements_cap(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    with pytest.raises(TableLimitError, match="max_table_elements limit \\(100\\)"):
        host.instantiate(guest("big_table"), limits=Limits(max_table_elements=100))
    limits = Limits(max_table_elements=10)
    with host.instantiate(guest("compute"), limits=limits, definers=[host_add()]) as g:
        assert g.call("grow_table", 5) == 1
        assert g.call("grow_table", 100) == -1


def test_instances_cap(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    with pytest.raises(InstanceLimitError, match="instance count too high"):
        host.instantiate(guest("grow_bomb"), limits=Limits(max_instances=0))


def test_plain_trap_carries_code_and_backtrace(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    with (
        host.instantiate(guest("compute"), definers=[host_add()]) as g,
        pytest.raises(GuestTrap) as info,
    ):
        g.call("div", 1, 0)
    assert not isinstance(info.value, WasmLimitError)
    assert info.value.code == "INTEGER_DIVISION_BY_ZERO"
    assert [f.func_name for f in info.value.frames] == ["div"]
    assert "INTEGER_DIVISION_BY_ZERO" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"fuel": -1},
        {"max_memory": 1.5},
        {"timeout": 0},
    ],
)
def test_invalid_limits(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Limits\\."):
        Limits(**bad)  # type: ignore[arg-type]


def test_limits_apply_per_store(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    """A tight guest does not affect a concurrently open guest on the same engine."""
    fuel = Limits(fuel=1_000_000)
    with (
        host.instantiate(guest("compute"), limits=fuel, definers=[host_add()]) as a,
        host.instantiate(guest("compute"), limits=fuel, definers=[host_add()]) as b,
    ):
        with pytest.raises(FuelExhaustedError):
            a.call("spin")
        assert b.call("add", 20, 22) == 42


def test_exit_code_is_not_an_error(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    result = host.run(guest("hello"), SandboxPolicy(args=("hello", "9")), Limits(fuel=10**9))
    assert result.exit_code == 9
