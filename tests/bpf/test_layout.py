"""`remora bpf layout` against pahole (Debian's dwarves) on the same object's BTF."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from remora.bpf.btf.types import Kind
from remora.bpf.elf import read_elf
from remora.bpf.errors import BPFError
from remora.bpf.layout import StructLayout, layouts, render

STRUCTS = ["holes", "tight", "nested", "wide", "bits"]
_MEMBER = re.compile(
    r"^\t(?P<type>\S.*?)\s+(?P<name>\w+)(?:\[\d+\])*(?::\d+)?;\s+/\*\s+(?P<off>\d+)(?::\s*\d+)?\s+(?P<size>\d+)\s+\*/"
)
_SUMMARY = re.compile(
    r"(?:(?<=/\* )|(?<=, ))(size|cachelines|members|sum members|holes|sum holes|padding): (\d+)"
)


def _pahole(obj: Path, name: str, *flags: str) -> str:
    pahole = shutil.which("pahole")
    if pahole is None:
        pytest.fail("pahole is required (apt-get install dwarves)")
    return subprocess.run(
        [pahole, *flags, "-C", name, str(obj)], check=True, capture_output=True, text=True
    ).stdout


def _numbers(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        for m in _SUMMARY.finditer(line):
            out[m.group(1)] = int(m.group(2))
        bits = re.search(r"sum bitfield members: (\d+) bits", line)
        if bits:
            out["bitfield bits"] = int(bits.group(1))
    return out


def _ours(layout: StructLayout) -> dict[str, int]:
    out = {"size": layout.size, "cachelines": layout.cachelines, "members": len(layout.members)}
    if layout.holes:
        out |= {
            "sum members": layout.sum_members,
            "holes": layout.holes,
            "sum holes": layout.sum_holes,
        }
    if layout.padding:
        out["padding"] = layout.padding
    if layout.sum_bitfield_bits:
        out["bitfield bits"] = layout.sum_bitfield_bits
    return out


def _top_level_members(text: str) -> list[tuple[str, int, int]]:
    """(name, offset, size) of the struct's own members; a nested union's body is skipped."""
    out = []
    depth = 0
    for line in text.splitlines()[1:]:
        if line.startswith("\t") and line.rstrip().endswith("{"):
            depth += 1
            continue
        if depth and line.lstrip().startswith("}"):
            depth -= 1
            m = re.search(r"\} (\w+);\s+/\*\s+(\d+)\s+(\d+)", line)
            if m and depth == 0:
                out.append((m.group(1), int(m.group(2)), int(m.group(3))))
            continue
        m = _MEMBER.match(line)
        if m and depth == 0:
            out.append((m.group("name"), int(m.group("off")), int(m.group("size"))))
    return out


@pytest.mark.parametrize("name", STRUCTS)
def test_layout_matches_pahole(bpf_objs: dict[str, Path], name: str) -> None:
    btf = read_elf(bpf_objs["layout"]).btf
    assert btf is not None
    (layout,) = layouts(btf, [name])
    text = _pahole(bpf_objs["layout"], name)
    assert _ours(layout) == _numbers(text)
    ours = [(m.name, m.offset, m.size) for m in layout.members]
    assert ours == _top_level_members(text)


def _ctype(size: int, align: int) -> Any:
    """A ctypes stand-in with the member's size and alignment."""
    base = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}[align]
    return base * (size // align)


@pytest.mark.parametrize("name", ["holes", "nested"])
def test_the_suggested_order_has_no_holes_and_beats_pahole_reorganize(
    bpf_objs: dict[str, Path], name: str
) -> None:
    btf = read_elf(bpf_objs["layout"]).btf
    assert btf is not None
    (layout,) = layouts(btf, [name])
    assert layout.reorder is not None and layout.reorder_size < layout.size
    by_name = {m.name: m for m in layout.members}
    fields = [(n, _ctype(by_name[n].size, by_name[n].align)) for n in layout.reorder]
    mirror = type("Mirror", (ctypes.Structure,), {"_fields_": fields})
    assert ctypes.sizeof(mirror) == layout.reorder_size  # the C compiler's rules agree
    assert sum(m.size for m in layout.members) <= layout.reorder_size
    reorganized = _numbers(_pahole(bpf_objs["layout"], name, "--reorganize"))
    assert layout.reorder_size <= reorganized["size"]


def test_tight_structs_get_no_suggestion_and_unions_no_holes(bpf_objs: dict[str, Path]) -> None:
    btf = read_elf(bpf_objs["layout"]).btf
    assert btf is not None
    (tight,) = layouts(btf, ["tight"])
    assert tight.reorder is None and tight.holes == 0 and tight.padding == 0
    unions = [lay for lay in layouts(btf) if lay.kind == "union"]
    assert all(lay.holes == 0 for lay in unions)
    names = {lay.name for lay in layouts(btf)}
    assert set(STRUCTS) <= names
    assert all(t.name in names for t in btf.types if t.kind == Kind.STRUCT and t.name and t.members)


def test_render_reads_like_pahole(bpf_objs: dict[str, Path]) -> None:
    btf = read_elf(bpf_objs["layout"]).btf
    assert btf is not None
    text = render(layouts(btf, ["holes"])[0])
    assert "/* XXX 7 bytes hole, try to pack */" in text
    assert "/* size: 32, cachelines: 1, members: 5 */" in text
    assert "reordered: count, id, port, tag, flag -> size 16, saves 16 bytes" in text
    wide = render(layouts(btf, ["wide"])[0])
    assert "cacheline 1 boundary (64 bytes) was 8 bytes ago" in wide
    assert "words[9];" in wide


def test_unknown_types_and_objects_without_btf_are_errors(
    bpf_objs: dict[str, Path], tmp_path: Path
) -> None:
    btf = read_elf(bpf_objs["layout"]).btf
    assert btf is not None
    with pytest.raises(BPFError, match="no struct or union named 'nope'"):
        layouts(btf, ["nope"])
