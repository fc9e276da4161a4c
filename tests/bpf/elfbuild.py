"""Build small BPF ELF objects byte by byte, for corner cases clang will not emit.

Layouts are the System V gABI's Elf64_Ehdr/Shdr/Sym; BTF records follow `linux/btf.h`. Only
what the hostile-input tests need: named sections (PROGBITS, NOBITS), symbols, a BTF blob.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS = 1, 2, 3, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
STT_OBJECT, STT_FUNC = 1, 2
STB_GLOBAL = 1


@dataclasses.dataclass
class Sec:
    name: str
    data: bytes = b""
    type: int = SHT_PROGBITS
    flags: int = SHF_ALLOC | SHF_WRITE
    size: int | None = None  # for NOBITS: the claimed size (data stays empty)


@dataclasses.dataclass
class Sym:
    name: str
    section: str
    value: int = 0
    size: int = 0
    type: int = STT_OBJECT
    bind: int = STB_GLOBAL


class _Strtab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")

    def add(self, s: str) -> int:
        if not s:
            return 0
        off = len(self.data)
        self.data += s.encode() + b"\0"
        return off


def build_elf(sections: Sequence[Sec], symbols: Sequence[Sym] = ()) -> bytes:
    """An ET_REL EM_BPF object with `sections` (after the null section), .symtab and .strtab."""
    shstr, strtab = _Strtab(), _Strtab()
    index = {s.name: i + 1 for i, s in enumerate(sections)}
    syms = bytearray(24)  # the null symbol
    for sym in symbols:
        info = (sym.bind << 4) | sym.type
        syms += struct.pack(
            "<IBBHQQ", strtab.add(sym.name), info, 0, index[sym.section], sym.value, sym.size
        )
    every = [
        *sections,
        Sec(".symtab", bytes(syms), SHT_SYMTAB, 0),
        Sec(".strtab", b"", SHT_STRTAB, 0),
        Sec(".shstrtab", b"", SHT_STRTAB, 0),
    ]
    names = [shstr.add(s.name) for s in every]
    every[-2].data = bytes(strtab.data)
    every[-1].data = bytes(shstr.data)
    body = bytearray(64)
    offsets = []
    for s in every:
        offsets.append(len(body))
        if s.type != SHT_NOBITS:
            body += s.data
        while len(body) % 8:
            body += b"\0"
    shoff = len(body)
    strtab_no = len(sections) + 2
    body += bytes(64)  # the null section header
    for s, name, off in zip(every, names, offsets, strict=True):
        size = s.size if s.size is not None else len(s.data)
        link = strtab_no if s.type == SHT_SYMTAB else 0
        info = 1 if s.type == SHT_SYMTAB else 0
        entsize = 24 if s.type == SHT_SYMTAB else 0
        body += struct.pack(
            "<IIQQQQIIQQ", name, s.type, s.flags, 0, off, size, link, info, 8, entsize
        )
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    struct.pack_into(
        "<16sHHIQQQIHHHHHH", body, 0, ident, 1, 247, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
        len(every) + 1, len(every),
    )  # fmt: skip
    return bytes(body)


def btf_blob(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def btf_rec(name_off: int, kind: int, ref_or_size: int, vlen: int = 0) -> bytes:
    return struct.pack("<III", name_off, (kind << 24) | vlen, ref_or_size)
