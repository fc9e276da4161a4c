from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest

from remora.wasm.abi import (
    F32,
    F64,
    I32,
    I64,
    U8,
    U32,
    Array,
    Bool,
    LinearMemory,
    Ptr,
    StructView,
    exported_memory,
    layout_of,
    u8,
    wasm_struct,
)
from remora.wasm.abigen import c_header, wit_sketch
from remora.wasm.bindings import GuestExport, HostModule, guest_export
from remora.wasm.errors import BindingError, StaleViewError
from remora.wasm.runner import Guest, WasmHost
from tests.wasm.conftest import GUESTS, compile_c


@wasm_struct
class Vec2:
    x: F32
    y: F32


@wasm_struct
class Point:
    id: U8
    pos: Vec2
    weight: F64
    flags: Annotated[list[int], Array(u8, 3)]
    active: Bool
    big: I64
    next: Annotated[int, Ptr("Point")]


host = HostModule("env")
scaled: list[int] = []


@host.function
def host_scale(p: Annotated[StructView, Ptr(Point)], factor: F64) -> I32:
    p.weight = p.weight * factor
    p.pos.x = p.pos.x * factor
    scaled.append(p.id)
    return int(p.id)


@guest_export
def guest_alloc(size: U32) -> U32: ...


@guest_export
def sum_points(points: Annotated[int, Ptr(Point)], n: U32) -> F64: ...


@guest_export
def make_point(id: U8) -> U32: ...


@guest_export
def scale_all(points: Annotated[int, Ptr(Point)], n: U32, factor: F64) -> I32: ...


EXPORTS = [guest_alloc, sum_points, make_point, scale_all]


def test_layout_offsets_and_padding() -> None:
    layout = layout_of(Point)
    assert [(f.name, f.offset, f.size) for f in layout.fields] == [
        ("id", 0, 1),
        ("pos", 4, 8),
        ("weight", 16, 8),
        ("flags", 24, 3),
        ("active", 27, 1),
        ("big", 32, 8),
        ("next", 40, 4),
    ]
    assert (layout.size, layout.align) == (48, 8)
    assert layout.padding == ((1, 3), (12, 4), (28, 4), (44, 4))
    text = layout.describe()
    assert "/*    1    3 */  <padding>" in text
    assert "/*   44    4 */  <tail padding>" in text


def test_describe_counts_padding() -> None:
    assert layout_of(Point).describe().splitlines()[-1] == "};  /* 15 padding bytes */"


@pytest.fixture(scope="module")
def structs_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("abi")
    (out / "abi.h").write_text(c_header([Point], host, EXPORTS))
    compile_c(GUESTS / "structs.c", out / "structs.wasm", ("-mexec-model=reactor", f"-I{out}"))
    return (out / "structs.wasm").read_bytes()


@pytest.fixture(params=["fast", "generic"])
def guest(
    request: pytest.FixtureRequest, structs_wasm: bytes, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Guest]:
    """Every binding test runs over both call paths (the switch is the documented env var)."""
    if request.param == "generic":
        monkeypatch.setenv("REMORA_WASM_FASTCALL", "0")
    with WasmHost().instantiate(structs_wasm, definers=[host.define]) as g:
        yield g


def sample(i: int) -> Point:
    return Point(
        id=i,
        pos=Vec2(0.5 * i, -1.0),
        weight=2.0**-i,
        flags=[i, 2 * i, 255],
        active=i % 2 == 0,
        big=-(10**12) * i,
        next=0,
    )


def py_sum(points: list[Point]) -> float:
    total = 0.0
    for p in points:
        total += p.id + p.pos.x + p.pos.y + p.weight + p.big + sum(p.flags)
        total += 1000 if p.active else 0
    return total


def test_guest_sums_struct_array_written_by_host(guest: Guest) -> None:
    calls = {e.signature.name: e.bind(guest) for e in EXPORTS}
    points = [sample(i) for i in range(10)]
    addr = calls["guest_alloc"](48 * len(points))
    memory = exported_memory(guest.store, guest.instance)
    memory.write_array(addr, points)
    assert calls["sum_points"](addr, len(points)) == pytest.approx(py_sum(points))
    assert memory.read_array(Point, addr, len(points)) == points


def test_host_reads_struct_written_by_guest(guest: Guest) -> None:
    addr = make_point.bind(guest)(42)
    memory = exported_memory(guest.store, guest.instance)
    point = memory.read(Point, addr)
    assert point == Point(42, Vec2(1.5, -2.25), 0.125, [7, 8, 9], True, -5_000_000_000, addr)
    view = memory.view(Point, addr)
    assert (view.id, view.pos.y, view.flags, view.next) == (42, -2.25, [7, 8, 9], addr)
    assert view.load() == point


def test_host_function_mutates_struct_through_view(guest: Guest) -> None:
    calls = {e.signature.name: e.bind(guest) for e in EXPORTS}
    points = [sample(i) for i in (1, 2, 3)]
    addr = calls["guest_alloc"](48 * 3)
    memory = exported_memory(guest.store, guest.instance)
    memory.write_array(addr, points)
    scaled.clear()
    assert calls["scale_all"](addr, 3, 4.0) == 6
    assert scaled == [1, 2, 3]
    after = memory.read_array(Point, addr, 3)
    assert [p.weight for p in after] == [4.0 * p.weight for p in points]
    assert [p.pos.x for p in after] == [4.0 * p.pos.x for p in points]


def test_view_is_zero_copy_and_goes_stale_when_memory_grows(guest: Guest) -> None:
    alloc = guest_alloc.bind(guest)
    memory = exported_memory(guest.store, guest.instance)
    addr = alloc(48)
    view = memory.view(Point, addr)
    view.id = 9
    assert memory.read(Point, addr).id == 9  # written straight into guest memory
    before = memory.size()
    alloc(4 << 20)  # forces memory.grow inside malloc
    assert memory.size() > before
    with pytest.raises(StaleViewError, match="linear memory changed"):
        _ = view.id
    with pytest.raises(StaleViewError):
        view.id = 1
    assert memory.view(Point, addr).id == 9


def test_bind_checks_the_guest_signature(guest: Guest) -> None:
    def sum_points(points: Annotated[int, Ptr(Point)], n: U32) -> I32: ...

    with pytest.raises(BindingError, match=r"sum_points: declared \(i32, i32\) -> \(i32\) but"):
        GuestExport(sum_points).bind(guest)


def test_write_checks_ranges_alignment_and_bounds(guest: Guest) -> None:
    memory: LinearMemory = exported_memory(guest.store, guest.instance)
    addr = guest_alloc.bind(guest)(64)
    bad = sample(1)
    bad.id = 300
    with pytest.raises(BindingError, match=r"Point\.id: 300 does not fit u8"):
        memory.write(addr, bad)
    with pytest.raises(BindingError, match="misaligned"):
        memory.write(addr + 4, sample(1))
    with pytest.raises(BindingError, match="outside linear memory"):
        memory.write(memory.size() - 8, sample(1))
    short = sample(1)
    short.flags = [1]
    with pytest.raises(BindingError, match="expected 3 elements"):
        memory.write(addr, short)
    with pytest.raises(BindingError, match="does not fit u32"):
        sum_points.bind(guest)(addr, -1)


def test_bad_declarations_are_rejected() -> None:
    with pytest.raises(BindingError, match=r"Bad\.x: .* is not a wasm32 ABI type"):

        @wasm_struct
        class Bad:
            x: int

    with pytest.raises(BindingError, match="pass structs and arrays by Ptr"):

        @guest_export
        def takes_struct(p: Point) -> None: ...

    with pytest.raises(BindingError, match="needs an ABI annotation"):

        @guest_export
        def untyped(p) -> None: ...  # type: ignore[no-untyped-def]


def test_header_pins_layout_and_fails_on_mismatch(tmp_path: Path) -> None:
    """The emitted static asserts really catch a C compiler that disagrees with the host."""
    header = c_header([Point], host, EXPORTS).replace("== 48", "== 40")
    (tmp_path / "abi.h").write_text(header)
    proc = subprocess.run(
        ["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-fsyntax-only", f"-I{tmp_path}",
         "-x", "c", "-"],
        input='#include "abi.h"\n',
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Point size" in proc.stderr


def test_header_text() -> None:
    header = c_header([Point], host, EXPORTS)
    assert "struct Vec2 pos; /* offset 4, size 8 */" in header
    assert "uint8_t flags[3]; /* offset 24, size 3 */" in header
    assert "struct Point *next; /* offset 40, size 4 */" in header
    assert "/* 3 bytes padding at offset 1 */" in header
    assert header.index("struct Vec2 {") < header.index("struct Point {")
    assert '__attribute__((import_module("env"), import_name("host_scale")))' in header
    assert "int32_t host_scale(struct Point *p, double factor);" in header


def test_wit_sketch() -> None:
    wit = wit_sketch([Point], host, EXPORTS)
    assert "record point {" in wit
    assert "flags: list<u8>,  // fixed length 3" in wit
    assert "host-scale: func(p: u32, factor: f64) -> s32;" in wit
    assert "sum-points: func(points: u32, n: u32) -> f64;" in wit
