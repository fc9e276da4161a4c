"""Check a Python ctypes type against a BTF type before any bytes are read through it.

This is Go's `unsafe.Offsetof` discipline made safe: a map's key/value layout in the object's
BTF is the truth, and a ctypes Structure that disagrees in size, member name or member offset is
rejected with an error naming the first field that differs.
"""

from __future__ import annotations

import ctypes
from typing import Any

from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFTypeMismatchError


def check_ctype(ctype: Any, btf_ref: tuple[Spec, int], what: str) -> None:
    spec, tid = btf_ref
    want = spec.sizeof(tid)
    if ctype is int or ctype is bytes:
        return  # size is checked by the codec against the map itself
    have = ctypes.sizeof(ctype)
    name = spec.type_name(tid)
    if have != want:
        raise BPFTypeMismatchError(
            f"{what}: {ctype.__name__} is {have} bytes but BTF {name} is {want} bytes"
        )
    st = spec.skip_mods(tid)
    if st.kind not in (Kind.STRUCT, Kind.UNION):
        return
    fields = getattr(ctype, "_fields_", None)
    if fields is None:
        raise BPFTypeMismatchError(f"{what}: BTF {name} is a struct but {ctype!r} has no fields")
    if len(fields) != len(st.members):
        raise BPFTypeMismatchError(
            f"{what}: {ctype.__name__} has {len(fields)} fields, BTF {name} has {len(st.members)}"
        )
    for (fname, *_), member in zip(fields, st.members, strict=True):
        if fname != member.name:
            raise BPFTypeMismatchError(
                f"{what}: field {fname!r} of {ctype.__name__} is named {member.name!r} "
                f"in BTF {name}"
            )
        have_off = getattr(ctype, fname).offset
        want_off = member.bit_offset // 8
        if member.bitfield_size == 0 and have_off != want_off:
            raise BPFTypeMismatchError(
                f"{what}: field {fname!r} of {ctype.__name__} is at offset {have_off}, "
                f"BTF {name} has it at {want_off}"
            )
