"""Struct layouts from BTF, as pahole shows them: offsets, sizes, holes, padding, cache lines,
and a member order that removes the holes.

A map value's layout is an ABI shared by the kernel side and the Python side, so its holes
matter twice: they waste map memory per entry, and a ctypes mirror written by hand must
reproduce them exactly. Everything here is computed from the object's BTF alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from remora.bpf.btf.types import Kind, Spec, Type
from remora.bpf.errors import BPFError

CACHELINE = 64


@dataclasses.dataclass
class MemberLayout:
    name: str
    type_name: str
    offset: int  # bytes
    size: int  # bytes of the member's type (the storage unit, for a bitfield)
    bit_offset: int  # inside the byte at `offset`, for bitfields
    bits: int  # 0 unless a bitfield
    align: int
    hole_after: int  # bytes of hole between this member and the next (or the end)
    bit_hole_after: int


@dataclasses.dataclass
class StructLayout:
    kind: str  # "struct" or "union"
    name: str
    size: int
    align: int
    members: list[MemberLayout]
    holes: int
    sum_holes: int
    bit_holes: int
    sum_bit_holes: int
    padding: int
    sum_members: int  # bytes of members that are not bitfields
    sum_bitfield_bits: int
    packed: bool
    reorder: list[str] | None  # a member order without holes, when it saves bytes
    reorder_size: int

    @property
    def cachelines(self) -> int:
        return (self.size + CACHELINE - 1) // CACHELINE

    @property
    def last_cacheline(self) -> int:
        return self.size % CACHELINE or (CACHELINE if self.size else 0)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cachelines"] = self.cachelines
        out["last_cacheline"] = self.last_cacheline
        out["saves"] = self.size - self.reorder_size if self.reorder else 0
        return out


def alignment(spec: Spec, tid: int, depth: int = 0) -> int:
    """The C alignment of a type on BPF (8 at most)."""
    t = spec.skip_mods(tid)
    if depth > 32:
        return 1
    if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
        return max(1, min(t.size, 8))
    if t.kind == Kind.PTR:
        return 8
    if t.kind == Kind.ARRAY:
        return alignment(spec, t.elem, depth + 1)
    if t.kind in (Kind.STRUCT, Kind.UNION):
        if _is_packed(spec, t, depth):
            return 1
        return max((alignment(spec, m.type, depth + 1) for m in t.members), default=1)
    return 1


def _is_packed(spec: Spec, t: Type, depth: int) -> bool:
    """BTF has no packed flag; a member off its natural alignment, or a size that is not a
    multiple of the members' alignment, says the struct was packed."""
    natural = 1
    for m in t.members:
        a = alignment(spec, m.type, depth + 1)
        natural = max(natural, a)
        if not m.bitfield_size and m.bit_offset % (8 * a):
            return True
    return t.size % natural != 0


def struct_layout(spec: Spec, t: Type) -> StructLayout:
    if t.kind not in (Kind.STRUCT, Kind.UNION):
        raise BPFError(f"{spec.type_name(t.id)} is {t.kind.name.lower()}, not a struct or union")
    members: list[MemberLayout] = []
    for m in t.members:
        size = spec.sizeof(m.type)
        members.append(
            MemberLayout(
                m.name,
                spec.type_name(m.type),
                m.bit_offset // 8,
                size,
                m.bit_offset % 8 if m.bitfield_size else 0,
                m.bitfield_size,
                alignment(spec, m.type),
                0,
                0,
            )
        )
    holes = sum_holes = bit_holes = sum_bit_holes = 0
    end_bits = 0
    if t.kind == Kind.STRUCT:
        for i, (ml, raw) in enumerate(zip(members, t.members, strict=True)):
            width = raw.bitfield_size or 8 * ml.size
            end_bits = max(end_bits, raw.bit_offset + width)
            nxt = t.members[i + 1].bit_offset if i + 1 < len(members) else None
            if nxt is None:
                continue
            gap_bytes = nxt // 8 - (end_bits + 7) // 8
            if gap_bytes > 0:
                ml.hole_after = gap_bytes
                holes += 1
                sum_holes += gap_bytes
            elif nxt > end_bits:
                ml.bit_hole_after = nxt - end_bits
                bit_holes += 1
                sum_bit_holes += nxt - end_bits
    else:
        end_bits = max((8 * ml.size for ml in members), default=0)
    padding = t.size - (end_bits + 7) // 8 if t.kind == Kind.STRUCT else 0
    packed = _is_packed(spec, t, 0)
    layout = StructLayout(
        "struct" if t.kind == Kind.STRUCT else "union",
        t.name or "(anon)",
        t.size,
        alignment(spec, t.id),
        members,
        holes,
        sum_holes,
        bit_holes,
        sum_bit_holes,
        max(padding, 0),
        sum(m.size for m in members if not m.bits),
        sum(m.bits for m in members),
        packed,
        None,
        t.size,
    )
    if t.kind == Kind.STRUCT and not packed and not any(m.bits for m in members):
        _suggest_order(layout)
    return layout


def _suggest_order(layout: StructLayout) -> None:
    """Widest alignment first (a stable sort keeps source order among equals); offer it only
    when it is smaller, since it also changes the ABI."""
    order = sorted(layout.members, key=lambda m: -m.align)
    off = 0
    for m in order:
        off = (off + m.align - 1) // m.align * m.align + m.size
    size = (off + layout.align - 1) // layout.align * layout.align
    if size < layout.size:
        layout.reorder = [m.name for m in order]
        layout.reorder_size = size


def layouts(spec: Spec, names: list[str] | None = None) -> list[StructLayout]:
    """Named structs and unions of the object (or just `names`), in BTF order."""
    if names:
        out = []
        for name in names:
            t = spec.by_name(name, Kind.STRUCT) or spec.by_name(name, Kind.UNION)
            if t is None:
                raise BPFError(f"no struct or union named {name!r} in the object's BTF")
            out.append(struct_layout(spec, t))
        return out
    return [
        struct_layout(spec, t)
        for t in spec.types
        if t.kind in (Kind.STRUCT, Kind.UNION) and t.name and t.members
    ]


def render(layout: StructLayout) -> str:
    """pahole's look: one line per member with /* offset size */, holes and a summary."""
    lines = [f"{layout.kind} {layout.name} {{"]
    line_no = 0
    for m in layout.members:
        if m.offset // CACHELINE > line_no and layout.kind == "struct":
            line_no = m.offset // CACHELINE
            ago = m.offset - line_no * CACHELINE
            boundary = f"cacheline {line_no} boundary ({line_no * CACHELINE} bytes)"
            lines.append(
                f"\t/* --- {boundary}" + (f" was {ago} bytes ago" if ago else "") + " --- */"
            )
        type_name, dims = m.type_name, ""
        if type_name.endswith("]"):  # C puts array bounds after the name
            type_name, dims = type_name[: type_name.index("[")], type_name[type_name.index("[") :]
        type_name = type_name.replace("(anon)", "{...}")
        decl = f"{m.name}{dims}:{m.bits};" if m.bits else f"{m.name}{dims};"
        where = (
            f"{m.offset:5}:{m.bit_offset:2} {m.size:2}" if m.bits else f"{m.offset:5} {m.size:5}"
        )
        lines.append(f"\t{type_name:<26} {decl:<21} /* {where} */")
        if m.hole_after:
            lines.append(f"\n\t/* XXX {m.hole_after} bytes hole, try to pack */\n")
        if m.bit_hole_after:
            lines.append(f"\n\t/* XXX {m.bit_hole_after} bits hole, try to pack */\n")
    lines.append("")
    lines.append(
        f"\t/* size: {layout.size}, cachelines: {layout.cachelines}, "
        f"members: {len(layout.members)} */"
    )
    if layout.holes:
        lines.append(
            f"\t/* sum members: {layout.sum_members}, holes: {layout.holes}, "
            f"sum holes: {layout.sum_holes} */"
        )
    if layout.sum_bitfield_bits:
        bits = layout.sum_bitfield_bits
        lines.append(f"\t/* sum bitfield members: {bits} bits ({bits // 8} bytes) */")
    if layout.bit_holes:
        lines.append(
            f"\t/* bit holes: {layout.bit_holes}, sum bit holes: {layout.sum_bit_holes} bits */"
        )
    if layout.padding:
        lines.append(f"\t/* padding: {layout.padding} */")
    lines.append(f"\t/* last cacheline: {layout.last_cacheline} bytes */")
    if layout.reorder:
        saves = layout.size - layout.reorder_size
        lines.append(
            f"\t/* reordered: {', '.join(layout.reorder)} -> size {layout.reorder_size}, "
            f"saves {saves} bytes */"
        )
    lines.append("};")
    return "\n".join(lines)
