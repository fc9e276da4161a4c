"""Check a Python ctypes type against a BTF type before any bytes are read through it.

This is Go's `unsafe.Offsetof` discipline made safe: a map's key/value layout in the object's
BTF is the truth, and a ctypes type that disagrees in size, member name, member offset or member
size is rejected with an error naming the first field that differs. Nested structs and unions
(also inside arrays) are checked the same way, since a wrong inner name or offset misreads data
just as surely as a wrong outer one. Anonymous BTF members match ctypes `_anonymous_` fields.
"""

from __future__ import annotations

import ctypes
from typing import Any

from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFTypeMismatchError

_MAX_DEPTH = 32


def check_ctype(ctype: Any, btf_ref: tuple[Spec, int], what: str) -> None:
    spec, tid = btf_ref
    if ctype is int or ctype is bytes:
        return  # size is checked by the codec against the map itself
    want = spec.sizeof(tid)
    have = ctypes.sizeof(ctype)
    from remora.bpf.codec import is_scalar_ctype

    if is_scalar_ctype(ctype):
        _check_scalar(ctype, spec, tid, what, have, want)
        return
    if have != want:
        name = spec.type_name(tid)
        raise BPFTypeMismatchError(
            f"{what}: {ctype.__name__} is {have} bytes but BTF {name} is {want} bytes"
        )
    _check_layout(ctype, spec, tid, what, "", 0)


def _check_layout(ctype: Any, spec: Spec, tid: int, what: str, path: str, depth: int) -> None:
    """Sizes already match; compare members (recursively) and array element types."""
    if depth > _MAX_DEPTH:
        return
    st = spec.skip_mods(tid)
    if st.kind == Kind.ARRAY and issubclass(ctype, ctypes.Array):
        if issubclass(ctype._type_, ctypes.Structure | ctypes.Union | ctypes.Array):
            elem = ctype._type_
            if ctypes.sizeof(elem) == spec.sizeof(st.elem):
                _check_layout(elem, spec, st.elem, what, path + "[].", depth + 1)
        return
    if st.kind not in (Kind.STRUCT, Kind.UNION):
        return
    name = spec.type_name(tid)
    owner = ctype.__name__
    fields = getattr(ctype, "_fields_", None)
    if fields is None:
        raise BPFTypeMismatchError(f"{what}: BTF {name} is a struct but {owner} has no fields")
    if len(fields) != len(st.members):
        raise BPFTypeMismatchError(
            f"{what}: {owner} has {len(fields)} fields, BTF {name} has {len(st.members)}"
        )
    anonymous = set(getattr(ctype, "_anonymous_", ()))
    for (fname, ftype, *bits), member in zip(fields, st.members, strict=True):
        label = f"{path}{fname}"
        if fname != member.name and not (member.name == "" and fname in anonymous):
            raise BPFTypeMismatchError(
                f"{what}: field {label!r} of {owner} is named {member.name!r} in BTF {name}"
            )
        if member.bitfield_size or bits:
            continue  # ctypes bitfield offsets are not byte offsets; size was checked overall
        have_off = getattr(ctype, fname).offset
        want_off = member.bit_offset // 8
        if have_off != want_off:
            raise BPFTypeMismatchError(
                f"{what}: field {label!r} of {owner} is at offset {have_off}, "
                f"BTF {name} has it at {want_off}"
            )
        have_size, want_size = ctypes.sizeof(ftype), spec.sizeof(member.type)
        if have_size != want_size:
            raise BPFTypeMismatchError(
                f"{what}: field {label!r} of {owner} is {have_size} bytes, "
                f"BTF {name} has {want_size}"
            )
        sub = label if issubclass(ftype, ctypes.Array) else label + "."
        _check_layout(ftype, spec, member.type, what, sub, depth + 1)


_INT_SIGNED = 1


def _check_scalar(ctype: Any, spec: Spec, tid: int, what: str, have: int, want: int) -> None:
    """A ctypes scalar must be what BTF says: same size, integer against INT or enum (or a
    pointer, for 8-byte unsigned), float against FLOAT, and the same signedness."""
    name = spec.type_name(tid)
    st = spec.skip_mods(tid)
    owner = ctype.__name__
    code = ctype._type_
    if have != want:
        raise BPFTypeMismatchError(f"{what}: {owner} is {have} bytes but BTF {name} is {want}")
    if code in "fd":
        if st.kind != Kind.FLOAT:
            raise BPFTypeMismatchError(f"{what}: {owner} is a float but BTF {name} is not")
        return
    if st.kind == Kind.PTR and code in "LQ":
        return
    if st.kind not in (Kind.INT, Kind.ENUM, Kind.ENUM64):
        raise BPFTypeMismatchError(f"{what}: {owner} is an integer but BTF {name} is not")
    if st.kind == Kind.INT and code != "?":
        signed = bool(st.int_encoding & _INT_SIGNED)
        if signed != code.islower():
            have_s = "signed" if code.islower() else "unsigned"
            want_s = "signed" if signed else "unsigned"
            raise BPFTypeMismatchError(f"{what}: {owner} is {have_s} but BTF {name} is {want_s}")
