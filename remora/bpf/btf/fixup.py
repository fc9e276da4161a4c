"""Prepare an object's BTF for BPF_BTF_LOAD.

clang cannot know final section sizes or variable offsets, so DATASECs arrive with size 0 and
secinfo offsets of 0; the kernel rejects that. We patch sizes from the ELF section headers and
offsets from the symbol table, sort each DATASEC's variables by offset (the kernel requires it),
and demote `extern` FUNC linkage, which the kernel does not accept, to static.
"""

from __future__ import annotations

import struct

from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFLoadError

_FUNC_EXTERN = 2


def fixup_btf(spec: Spec, section_sizes: dict[str, int], var_offsets: dict[str, int]) -> bytes:
    raw = bytearray(spec.raw)
    t0 = spec.header.hdr_len + spec.header.type_off
    for t in spec.types:
        rec = t0 + t.record_off
        if t.kind == Kind.DATASEC:
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
    return bytes(raw)
