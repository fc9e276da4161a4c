"""Decode bytes as a BTF type into plain Python values, for printing events.

`remora bpf trace` shows records of a type that exists only in the object's BTF. Generating a
ctypes class for each record type would work too, but printing wants names and numbers, not
objects. So this walks the BTF type directly and gives dicts for structs and unions, lists for
arrays, text for char arrays (up to the first NUL), enumerator names where a value has one,
and ints elsewhere. Pointers are kernel or BPF addresses, shown as hex strings, since they are
meaningless in user space anyway.
"""

from __future__ import annotations

import struct
from typing import Any

from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFError

_MAX_DEPTH = 32
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4


def decode(spec: Spec, tid: int, data: bytes | memoryview, offset: int = 0) -> Any:
    """The value of type `tid` at `offset`. The caller checks that `data` is long enough
    (`spec.sizeof(tid)` bytes from `offset`)."""
    return _value(spec, tid, bytes(data), offset, 0)


def _value(spec: Spec, tid: int, data: bytes, off: int, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise BPFError(f"BTF type {tid}: nested deeper than {_MAX_DEPTH}")
    t = spec.skip_mods(tid)
    if t.kind == Kind.INT:
        if t.int_bits and t.int_bits < 8 * t.size:  # an INT narrower than its storage
            raw = int.from_bytes(data[off : off + t.size], "little")
            return raw & ((1 << t.int_bits) - 1)
        if t.int_encoding & _INT_BOOL:
            return data[off] != 0
        return int.from_bytes(
            data[off : off + t.size], "little", signed=bool(t.int_encoding & _INT_SIGNED)
        )
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        signed = any(v < 0 for _, v in t.enum_values)
        value = int.from_bytes(data[off : off + t.size], "little", signed=signed)
        for name, v in t.enum_values:
            if v == value:
                return name
        return value
    if t.kind == Kind.FLOAT:
        fmt = {4: "<f", 8: "<d"}.get(t.size)
        if fmt is None:
            return data[off : off + t.size].hex()
        return struct.unpack_from(fmt, data, off)[0]
    if t.kind == Kind.PTR:
        return hex(int.from_bytes(data[off : off + 8], "little"))
    if t.kind == Kind.ARRAY:
        elem = spec.skip_mods(t.elem)
        if _is_char(elem):
            chars = data[off : off + t.nelems]
            return chars.split(b"\0", 1)[0].decode(errors="replace")
        step = spec.sizeof(t.elem)
        return [_value(spec, t.elem, data, off + i * step, depth + 1) for i in range(t.nelems)]
    if t.kind in (Kind.STRUCT, Kind.UNION):
        out: dict[str, Any] = {}
        for i, m in enumerate(t.members):
            name = m.name or f"_anon{i}"
            if m.bitfield_size:
                start = off * 8 + m.bit_offset
                width = spec.sizeof(m.type)
                word = int.from_bytes(data[start // 8 : start // 8 + width + 1], "little")
                out[name] = (word >> (start % 8)) & ((1 << m.bitfield_size) - 1)
                continue
            value = _value(spec, m.type, data, off + m.bit_offset // 8, depth + 1)
            if not m.name and isinstance(value, dict):
                out.update(value)  # an anonymous struct or union: its members are ours
            else:
                out[name] = value
        return out
    return data[off : off + spec.sizeof(tid)].hex()


def _is_char(t: Any) -> bool:
    """C's plain `char`: clang encodes it as a signed byte named "char", not with BTF's CHAR
    flag. `unsigned char` (and so `__u8`) arrays stay numbers: they are usually bytes."""
    return bool(
        t.kind == Kind.INT and t.size == 1 and (t.name == "char" or t.int_encoding & _INT_CHAR)
    )
