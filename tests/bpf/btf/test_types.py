from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from remora.bpf.btf.ext import parse_ext
from remora.bpf.btf.fixup import fixup_btf
from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFLoadError


def _data(elf: ELFFile, name: str) -> bytes:
    sec = elf.get_section_by_name(name)
    assert sec is not None, name
    return sec.data()


def build_btf(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_hand_built_struct() -> None:
    strings = b"\0int\0pair\0a\0b\0"
    types = (
        struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", 32)  # [1] int, 4 bytes
        + struct.pack("<III", 5, (4 << 24) | 2, 8)  # [2] struct pair { int a; int b; }
        + struct.pack("<III", 10, 1, 0) + struct.pack("<III", 12, 1, 32)
    )  # fmt: skip
    spec = Spec(build_btf(types, strings))
    pair = spec.by_name("pair", Kind.STRUCT)
    assert pair is not None and pair.size == 8
    assert [(m.name, m.bit_offset) for m in pair.members] == [("a", 0), ("b", 32)]
    assert spec.sizeof(pair.id) == 8 and spec.type_name(pair.id) == "struct pair"


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "too short"),
        (struct.pack("<HBBIIIII", 0x9FEB, 1, 0, 24, 0, 0, 0, 0), "bad magic"),
        (struct.pack("<HBBIIIII", 0xEB9F, 2, 0, 24, 0, 0, 0, 0), "version"),
        (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 0, 1), "exceed"),
        (build_btf(struct.pack("<III", 0, 31 << 24, 0), b"\0"), "unknown kind"),
        (build_btf(struct.pack("<III", 0, (4 << 24) | 9, 8), b"\0"), "needs 108 more bytes"),
        (build_btf(struct.pack("<III", 0, 2 << 24, 7), b"\0"), "missing type 7"),
        (build_btf(struct.pack("<III", 99, 2 << 24, 0), b"\0"), "string offset 99"),
    ],
)
def test_hostile_btf_is_a_clean_error(blob: bytes, match: str) -> None:
    with pytest.raises(BPFLoadError, match=match):
        Spec(blob)


def _rec(kind: Kind, ref: int, vlen: int = 0) -> bytes:
    return struct.pack("<III", 0, (kind << 24) | vlen, ref)


_INT = struct.pack("<III", 0, Kind.INT << 24, 4) + struct.pack("<I", 32)


@pytest.mark.parametrize(
    ("types", "loop"),
    [
        # [1] typedef -> [2] const -> [1]
        (_rec(Kind.TYPEDEF, 2) + _rec(Kind.CONST, 1), "1 (TYPEDEF) -> 2 (CONST) -> 1 (TYPEDEF)"),
        (_rec(Kind.PTR, 1), "1 (PTR) -> 1 (PTR)"),
        (_rec(Kind.PTR, 2) + _rec(Kind.PTR, 1), "2 (PTR) -> 1 (PTR) -> 2 (PTR)"),
        # [2] int[4] whose element is [3] a pointer back to [2]; [1] is the index type
        (
            _INT + _rec(Kind.ARRAY, 0) + struct.pack("<III", 3, 1, 4) + _rec(Kind.PTR, 2),
            "2 (ARRAY) -> 3 (PTR) -> 2 (ARRAY)",
        ),
        # a struct that contains itself by value
        (_rec(Kind.STRUCT, 4, 1) + struct.pack("<III", 0, 1, 0), "1 (STRUCT) -> 1 (STRUCT)"),
        # a DATASEC variable whose type is a pointer cycle
        (
            _rec(Kind.VAR, 2) + struct.pack("<I", 1) + _rec(Kind.PTR, 3) + _rec(Kind.PTR, 2)
            + _rec(Kind.DATASEC, 8, 1) + struct.pack("<III", 1, 0, 8),
            "3 (PTR) -> 2 (PTR) -> 3 (PTR)",
        ),
        # a function prototype returning a pointer to itself
        (_rec(Kind.FUNC_PROTO, 2) + _rec(Kind.PTR, 1), "1 (FUNC_PROTO) -> 2 (PTR) -> 1"),
    ],
)  # fmt: skip
def test_impossible_reference_cycles_are_refused_with_their_ids(types: bytes, loop: str) -> None:
    with pytest.raises(BPFLoadError, match=re.escape(f"reference cycle {loop}")):
        Spec(build_btf(types, b"\0"))


def test_cycles_through_a_pointer_to_a_struct_are_normal_c() -> None:
    # struct node { struct node *next; void (*cb)(struct node); }
    types = (
        _rec(Kind.STRUCT, 16, 2) + struct.pack("<III", 0, 2, 0) + struct.pack("<III", 0, 3, 64)
        + _rec(Kind.PTR, 1) + _rec(Kind.PTR, 4)
        + _rec(Kind.FUNC_PROTO, 0, 1) + struct.pack("<II", 0, 1)
    )  # fmt: skip
    spec = Spec(build_btf(types, b"\0"))
    assert spec.type_name(2) == "struct (anon) *"
    assert spec.type_name(3) == "(function) *"
    assert spec.sizeof(1) == 16


def test_long_acyclic_chains_are_spelled_without_recursion() -> None:
    # 100,000 pointers deep: legal BTF, but no walk may recurse once per level
    n = 100_000
    types = _INT + b"".join(_rec(Kind.PTR, i) for i in range(1, n))
    spec = Spec(build_btf(types, b"\0"))
    name = spec.type_name(n)
    assert name.startswith("...") and len(name) < 200
    assert spec.sizeof(n) == 8
    # 100 arrays of arrays: sizing stops at the kernel's own kind of depth limit, cleanly
    arrays = _INT + b"".join(
        _rec(Kind.ARRAY, 0) + struct.pack("<III", i, 1, 2) for i in range(1, 101)
    )
    spec = Spec(build_btf(arrays, b"\0"))
    with pytest.raises(BPFLoadError, match="nested more than 64 deep"):
        spec.sizeof(101)
    assert spec.type_name(101).startswith("...[2][2]")


def test_object_btf_ext_and_fixup(bpf_objs: dict[str, Path]) -> None:
    with open(bpf_objs["globals"], "rb") as f:
        elf = ELFFile(f)
        raw = _data(elf, ".BTF")
        ext_raw = _data(elf, ".BTF.ext")
    spec = Spec(raw)
    ext = parse_ext(ext_raw, spec.strings)
    assert sorted(ext.funcs) == [".text", "socket", "xdp"]
    assert [spec.type(r.type_id).name for r in ext.funcs["xdp"]] == ["xdp_count", "xdp_magic"]
    assert all(r.insn_off % 8 == 0 for recs in ext.lines.values() for r in recs)
    rodata = spec.by_name(".rodata", Kind.DATASEC)
    assert rodata is not None and rodata.size == 0  # clang leaves it to the loader
    fixed = Spec(fixup_btf(spec, {".rodata": 16}, {"verdict": 0, "magic": 8}))
    ro = fixed.by_name(".rodata", Kind.DATASEC)
    assert ro is not None and ro.size == 16
    assert [(fixed.type(s.type).name, s.offset) for s in ro.secinfo] == [
        ("verdict", 0),
        ("magic", 8),
    ]


def test_truncated_ext_is_a_clean_error(bpf_objs: dict[str, Path]) -> None:
    with open(bpf_objs["globals"], "rb") as f:
        elf = ELFFile(f)
        spec = Spec(_data(elf, ".BTF"))
        ext_raw = _data(elf, ".BTF.ext")
    for cut in (0, 8, 31, 40, len(ext_raw) // 2, len(ext_raw) - 1):
        with pytest.raises(BPFLoadError):
            parse_ext(ext_raw[:cut], spec.strings)
