"""`inspect` names every value type wasmtime accepts, and no type makes the process abort.

wasmtime-py's type objects panic inside Rust when asked to name `v128` or any reference type
beyond funcref/externref; these cases run the CLI in a child so such a regression is a failed
assertion (signal SIGABRT) rather than the end of the test run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime

from tests.wasm.cli_child import run_cli

# A function taking one v128, exported as "f" (the shape fuzzing first found aborting inspect).
V128_PARAM = bytes.fromhex("0061736d0100000001050160017b0003020100070501016600000a040102000b")


def inspect(tmp_path: Path, data: bytes, *flags: str) -> str:
    module = tmp_path / "m.wasm"
    module.write_bytes(data)
    result = run_cli(["wasm", "inspect", str(module), *flags])
    assert result.returncode == 0, (result.signal_name, result.stderr)
    assert result.stderr == ""
    return result.stdout


def test_v128_signature_is_described_not_aborted(tmp_path: Path) -> None:
    assert "func    f: (v128) -> ()" in inspect(tmp_path, V128_PARAM)
    doc = json.loads(inspect(tmp_path, V128_PARAM, "--json"))
    assert doc["exports"] == [{"module": None, "name": "f", "kind": "func", "type": "(v128) -> ()"}]


CASES = [
    (
        '(module (func (export "f") (param exnref anyref eqref i31ref structref arrayref nullref'
        " nullexternref nullfuncref nullexnref) (result funcref externref) ref.null func"
        " ref.null extern))",
        {
            "f": "(exnref, anyref, eqref, i31ref, structref, arrayref, nullref, nullexternref, "
            "nullfuncref, nullexnref) -> (funcref, externref)"
        },
    ),
    (
        '(module (type $t (func)) (func (export "f") (param (ref null $t) (ref $t) (ref func))))',
        {"f": "((ref null 0), (ref 0), (ref func)) -> ()"},
    ),
    (
        '(module (global (export "v") v128 v128.const i64x2 0 0)'
        ' (global (export "e") (mut externref) ref.null extern)'
        ' (global (export "x") (mut i64) (i64.add (i64.const 1) (i64.const 2))))',
        {"v": "v128", "e": "mut externref", "x": "mut i64"},
    ),
    (
        '(module (table (export "t") 1 exnref) (table (export "u") i64 1 5 funcref)'
        ' (table (export "w") 2 (ref func) ref.func 0) (func))',
        {
            "t": "exnref min=1 max=None",
            "u": "i64 funcref min=1 max=5",
            "w": "(ref func) min=2 max=None",
        },
    ),
    (
        '(module (memory (export "m") i64 1 2) (memory (export "n") 1 2 shared))',
        {"m": "i64 pages min=1 max=2", "n": "i32 pages min=1 max=2 shared"},
    ),
    (
        '(module (import "a" "x" (tag (param v128))) (tag (export "e") (param i32))'
        ' (export "x" (tag 0)))',
        {"e": "(i32) -> ()", "x": "(v128) -> ()"},
    ),
    (
        "(module (rec (type $s (struct (field i32) (field (mut i8)))) (type (sub (array i16))))"
        ' (func (export "f") (result (ref null $s)) ref.null $s)'
        ' (global (export "g") (ref null $s) (struct.new_default $s))'
        ' (global (export "i") i31ref (ref.i31 (i32.const 3))))',
        {"f": "() -> ((ref null 0))", "g": "(ref null 0)", "i": "i31ref"},
    ),
]


@pytest.mark.parametrize(("wat", "expected"), CASES)
def test_every_value_type_is_named(tmp_path: Path, wat: str, expected: dict[str, str]) -> None:
    doc = json.loads(inspect(tmp_path, wasmtime.wat2wasm(wat), "--json"))
    assert {e["name"]: e["type"] for e in doc["exports"]} == expected


def test_imports_of_every_kind_are_described(tmp_path: Path) -> None:
    wat = (
        '(module (import "a" "f" (func (param v128) (result exnref)))'
        ' (import "a" "g" (global (mut v128))) (import "a" "t" (table 1 2 anyref))'
        ' (import "a" "m" (memory i64 1)) (import "a" "e" (tag (param i32))))'
    )
    text = inspect(tmp_path, wasmtime.wat2wasm(wat))
    for line in [
        "func    a.f: (v128) -> (exnref)",
        "global  a.g: mut v128",
        "table   a.t: anyref min=1 max=2",
        "memory  a.m: i64 pages min=1 max=None",
        "tag     a.e: (i32) -> ()",
    ]:
        assert line in text
