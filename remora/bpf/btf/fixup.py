"""Prepare an object's BTF for BPF_BTF_LOAD.

clang cannot know final section sizes or variable offsets, so DATASECs arrive with size 0 and
secinfo offsets of 0; the kernel rejects that. We patch sizes from the ELF section headers and
offsets from the symbol table, sort each DATASEC's variables by offset (the kernel requires it),
and demote `extern` FUNC linkage, which the kernel does not accept, to static.

Externs need more, since the kernel accepts no extern VAR either: `.kconfig` variables become
ordinary ones at the offsets the `.kconfig` map gives them, and `.ksyms` (whose entries live in
no map at all) becomes a section of 4-byte int placeholders. The int and one placeholder
variable that stands in for each kfunc entry are appended to the BTF, as libbpf does.
"""

from __future__ import annotations

import struct

from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFLoadError

_FUNC_EXTERN = 2
_VAR_EXTERN = 2
_VAR_GLOBAL = 1
_KSYMS = ".ksyms"
_HDR_TYPE_OFF = 8  # type_off, type_len, str_off, str_len follow, inside struct btf_header


def fixup_btf(spec: Spec, section_sizes: dict[str, int], var_offsets: dict[str, int]) -> bytes:
    raw = bytearray(spec.raw)
    t0 = spec.header.hdr_len + spec.header.type_off
    ksyms = spec.by_name(_KSYMS, Kind.DATASEC)
    int_id = dummy_id = 0
    if ksyms is not None and ksyms.secinfo:
        int_id, dummy_id = len(spec.types), len(spec.types) + 1
    for t in spec.types:
        rec = t0 + t.record_off
        if t.kind == Kind.VAR and t.linkage == _VAR_EXTERN:
            struct.pack_into("<I", raw, rec + 12, _VAR_GLOBAL)
            if ksyms is not None and any(spec.type(si.type) is t for si in ksyms.secinfo):
                struct.pack_into("<I", raw, rec + 8, int_id)
        if t is ksyms:
            struct.pack_into("<I", raw, rec + 8, 4 * len(t.secinfo))
            for i, si in enumerate(t.secinfo):
                tid = si.type if spec.type(si.type).kind == Kind.VAR else dummy_id
                struct.pack_into("<III", raw, rec + 12 + 12 * i, tid, 4 * i, 4)
        elif t.kind == Kind.DATASEC:
            size = section_sizes.get(t.name, t.size)
            if size > 0xFFFFFFFF:
                raise BPFLoadError(f"BTF: section {t.name!r} is too large ({size} bytes)")
            struct.pack_into("<I", raw, rec + 8, size)
            entries = []
            for si in t.secinfo:
                var = spec.type(si.type)
                off = var_offsets.get(var.name, si.offset) if var.kind == Kind.VAR else si.offset
                if off > 0xFFFFFFFF:
                    raise BPFLoadError(f"BTF: variable {var.name!r} offset {off} is out of range")
                entries.append((off, si.type, si.size))
            entries.sort()
            for i, (off, tid, sz) in enumerate(entries):
                struct.pack_into("<III", raw, rec + 12 + 12 * i, tid, off, sz)
        elif t.kind == Kind.FUNC and t.linkage == _FUNC_EXTERN:
            (info,) = struct.unpack_from("<I", raw, rec + 4)
            struct.pack_into("<I", raw, rec + 4, info & ~0xFFFF)
            # clang leaves a declaration's parameters unnamed, and the kernel wants every
            # parameter of a FUNC named: they borrow the placeholder variable's name.
            proto = spec.type(t.ref)
            if int_id and proto.kind == Kind.FUNC_PROTO:
                p0 = t0 + proto.record_off + 12
                for i, (pname, ptype) in enumerate(proto.params):
                    if not pname and ptype:
                        struct.pack_into("<I", raw, p0 + 8 * i, spec.header.str_len + 4)
    if int_id:
        raw = _append_placeholders(raw, spec)
    return bytes(raw)


def _append_placeholders(raw: bytearray, spec: Spec) -> bytearray:
    """Append `int` and a global `int __remora_ksym` after the last type (ids n and n+1).

    Types and strings are appended at the ends of their sections; string offsets are
    relative to the string section, so nothing already there moves in meaning.
    """
    h = spec.header
    t_end = h.hdr_len + h.type_off + h.type_len
    s0 = h.hdr_len + h.str_off
    strings = bytes(raw[s0 : s0 + h.str_len])
    int_name = len(strings)
    var_name = int_name + 4  # fixup_btf names unnamed kfunc parameters with this offset
    new_strings = b"int\0__remora_ksym\0"
    int_id = len(spec.types)
    int_rec = struct.pack("<IIII", int_name, Kind.INT << 24, 4, (1 << 24) | 32)  # signed, 32 bits
    var_rec = struct.pack("<IIII", var_name, Kind.VAR << 24, int_id, _VAR_GLOBAL)
    types = bytes(raw[h.hdr_len + h.type_off : t_end]) + int_rec + var_rec
    out = bytearray(raw[: h.hdr_len]) + types + strings + new_strings
    struct.pack_into(
        "<IIII", out, _HDR_TYPE_OFF, 0, len(types), len(types), len(out) - h.hdr_len - len(types)
    )
    return out
