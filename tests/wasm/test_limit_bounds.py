"""Limit values wasmtime cannot take are refused up front, and table growth stays bounded.

The CLI cases run in a child (tests/wasm/cli_child.py): the failures they guard against were
Rust panics (exit 134, the code documented for a guest trap) and runaway host memory, neither of
which a test process survives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from remora.wasm import cli
from remora.wasm.engine import EngineConfig, engine_for
from remora.wasm.errors import StackLimitError
from remora.wasm.limits import DEFAULT_MAX_TABLE_ELEMENTS, DEFAULT_MAX_WASM_STACK, Limits
from remora.wasm.runner import WasmHost
from tests.wasm.cli_child import run_cli

# Grows a table of funcrefs by 100000 elements per iteration, forever: without a table cap it
# takes gigabytes of host memory long before a million units of fuel run out.
TABLE_BOMB = (
    '(module (table 0 funcref) (func (export "_start")'
    " (loop (drop (table.grow 0 (ref.null func) (i32.const 100000))) (br 0))))"
)
# Grows an exported table 1000 elements at a time until refused, then traps.
TABLE_FILL = (
    '(module (table (export "t") 0 funcref) (func (export "_start")'
    " (loop (br_if 0 (i32.ne (table.grow 0 (ref.null func) (i32.const 1000)) (i32.const -1))))"
    " unreachable))"
)
RECURSE = '(module (func $r (export "_start") (call $r)))'


@pytest.fixture
def module(tmp_path: Path) -> Callable[[str], str]:
    def write(wat: str) -> str:
        path = tmp_path / "m.wasm"
        path.write_bytes(wasmtime.wat2wasm(wat))
        return str(path)

    return write


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-wasm-stack", "0", "expected 1 byte to 2MiB"),
        ("--max-wasm-stack", "4MiB", "expected 1 byte to 2MiB"),
        ("--max-wasm-stack", "2097153", "got 2097153"),
        ("--timeout", "inf", "finite"),
        ("--timeout", "nan", "finite"),
        ("--timeout", "1e308", "at most 1e+09 seconds"),
        ("--fuel", str(1 << 64), "at most 2**64 - 1"),
    ],
)
def test_unusable_limit_is_a_usage_error(
    module: Callable[[str], str], flag: str, value: str, message: str
) -> None:
    result = run_cli(["wasm", "run", module(RECURSE), "--no-cache", flag, value])
    assert result.returncode == 2, (result.signal_name, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"remora wasm run: error: argument {flag}: "), lines
    assert message in lines[-1]
    assert "panicked" not in result.stderr and "Traceback" not in result.stderr


def test_largest_stack_is_accepted(module: Callable[[str], str]) -> None:
    result = run_cli(["wasm", "run", module(RECURSE), "--no-cache", "--max-wasm-stack", "2MiB"])
    assert result.returncode == cli.EXIT_TRAPPED, (result.signal_name, result.stderr)
    assert "max_wasm_stack limit (2097152) exceeded" in result.stderr


def test_default_stack_is_named_when_no_limit_was_set(module: Callable[[str], str]) -> None:
    result = run_cli(["wasm", "run", module(RECURSE), "--no-cache"])
    assert result.returncode == cli.EXIT_TRAPPED
    assert f"max_wasm_stack limit ({DEFAULT_MAX_WASM_STACK}, the default) exceeded" in (
        result.stderr
    )
    assert "(None)" not in result.stderr


@pytest.mark.parametrize(
    "bad",
    [
        {"max_wasm_stack": 0},
        {"max_wasm_stack": (2 << 20) + 1},
        {"timeout": math.inf},
        {"timeout": math.nan},
        {"timeout": 1e308},
        {"fuel": 1 << 64},
    ],
)
def test_library_refuses_the_same_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Limits\\."):
        Limits(**bad)  # type: ignore[arg-type]


def test_engine_config_refuses_stack_wasmtime_would_panic_on() -> None:
    for size in (0, 4 << 20):
        with pytest.raises(ValueError, match="1 byte to 2MiB"):
            EngineConfig(max_wasm_stack=size)
    assert engine_for(EngineConfig(max_wasm_stack=2 << 20)).engine is not None


def test_stack_error_without_a_limit_names_the_default() -> None:
    with pytest.raises(StackLimitError) as info:
        WasmHost().run(wasmtime.wat2wasm(RECURSE))
    assert (info.value.value, info.value.default) == (DEFAULT_MAX_WASM_STACK, True)
    assert str(info.value).startswith("max_wasm_stack limit (524288, the default) exceeded")


def test_table_bomb_stays_small_and_is_reported(module: Callable[[str], str]) -> None:
    result = run_cli(
        ["wasm", "run", module(TABLE_BOMB), "--no-cache", "--max-memory", "16MiB",
         "--fuel", "1000000"],
        max_rss=256 << 20,
    )  # fmt: skip
    assert result.killed_for is None, result
    assert result.peak_rss < 128 << 20
    assert result.returncode == cli.EXIT_TRAPPED
    assert "fuel limit (1000000) exceeded" in result.stderr


def test_full_table_is_noted_after_the_trap(module: Callable[[str], str]) -> None:
    result = run_cli(["wasm", "run", module(TABLE_FILL), "--no-cache", "--fuel", "1000000"])
    assert result.returncode == cli.EXIT_TRAPPED
    assert "table 't' is full at the table element limit (10000" in result.stderr
    small = run_cli(
        ["wasm", "run", module(TABLE_FILL), "--no-cache", "--max-table-elements", "3000"]
    )
    assert "table 't' is full at the table element limit (3000" in small.stderr


def test_table_cap_defaults_and_counts_against_max_memory() -> None:
    assert cli.DEFAULT_MAX_TABLE_ELEMENTS == DEFAULT_MAX_TABLE_ELEMENTS == 10_000
    assert Limits().table_element_cap == 10_000
    assert Limits(max_memory=8000).table_element_cap == 1000
    assert Limits(max_table_elements=None).table_element_cap is None
    host = WasmHost()
    grow = (
        '(module (table (export "t") 0 funcref) (func (export "grow") (param i32) (result i32)'
        " (table.grow 0 (ref.null func) (local.get 0))))"
    )
    with host.instantiate(wasmtime.wat2wasm(grow), limits=Limits(max_memory=8000)) as g:
        assert g.call("grow", 1000) == 0
        assert g.call("grow", 1) == -1  # refused per spec: -1, the table unchanged
        assert g.tables_at_cap() == ("t",)
    with host.instantiate(wasmtime.wat2wasm(grow)) as g:
        assert g.call("grow", 10_001) == -1
        assert g.call("grow", 10_000) == 0
