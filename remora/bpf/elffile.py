"""A minimal, bounds-checked reader for 64-bit little-endian ELF relocatable objects.

BPF objects use a small corner of ELF: section headers, a symbol table, and SHT_REL relocation
sections. Reading just that ourselves (the layouts are the System V gABI's Elf64_Ehdr, Elf64_Shdr,
Elf64_Sym and Elf64_Rel) avoids pyelftools' ~55 ms import and per-field parsing on every load,
and lets every out-of-range offset become a `BPFLoadError` naming the section, instead of
whatever a general-purpose parser raises on hostile input.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from remora.bpf.errors import BPFLoadError

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")

SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHT_REL = 9
SHF_EXECINSTR = 0x4
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2
SHN_LORESERVE = 0xFF00
EM_BPF = 247
_MAX_NOBITS = 1 << 28  # a .bss larger than this is a corrupt header, not a real program


class Section(NamedTuple):
    num: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


class Symbol(NamedTuple):
    name: str
    value: int
    size: int
    shndx: int  # -1 for undefined or special (ABS/COMMON) indexes
    type: int
    bind: int


class ElfFile:
    def __init__(self, data: bytes) -> None:
        self.data = data
        if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
            raise BPFLoadError("not an ELF file")
        ident = data[:16]
        if ident[4] != 2 or ident[5] != 1:
            raise BPFLoadError("need a 64-bit little-endian ELF")
        (_, _etype, machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = (
            _EHDR.unpack_from(data)
        )
        if machine != EM_BPF:
            raise BPFLoadError(f"not a BPF object (e_machine {machine})")
        if shnum and shentsize != _SHDR.size:
            raise BPFLoadError(f"section header size {shentsize}, expected {_SHDR.size}")
        if shoff + shnum * _SHDR.size > len(data):
            raise BPFLoadError(f"section headers ({shnum} at {shoff}) run past end of file")
        raw = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
        if shnum and shstrndx >= shnum:
            raise BPFLoadError(f"section name table index {shstrndx} out of range")
        names = self._bytes_of(raw[shstrndx], "section names") if shnum else b""
        self.sections: list[Section] = []
        for i, (name_off, typ, flags, _, off, size, link, info, _, entsize) in enumerate(raw):
            name = _cstr(names, name_off, f"section {i} name")
            self.sections.append(Section(i, name, typ, flags, off, size, link, info, entsize))
            if typ != SHT_NOBITS and typ != 0 and off + size > len(data):
                raise BPFLoadError(f"section {name!r} ({off}+{size}) runs past end of file")
        self._by_name = {s.name: s for s in reversed(self.sections)}
        self.symbols: list[Symbol] = self._symbols()

    def _bytes_of(self, shdr: tuple[int, ...], what: str) -> bytes:
        off, size = shdr[4], shdr[5]
        if off + size > len(self.data):
            raise BPFLoadError(f"{what} ({off}+{size}) run past end of file")
        return self.data[off : off + size]

    def section(self, name: str) -> Section | None:
        return self._by_name.get(name)

    def content(self, sec: Section) -> bytes:
        """The section's bytes in the file. SHT_NOBITS has none: its zeros are never made here,
        since a 100-byte object can declare gigabytes of `.bss`."""
        if sec.type == SHT_NOBITS:
            if sec.size:
                raise BPFLoadError(f"section {sec.name!r} is SHT_NOBITS: it has no contents")
            return b""
        return self.data[sec.offset : sec.offset + sec.size]

    def check_nobits(self, sec: Section) -> None:
        """Refuse a SHT_NOBITS section larger than any real program's zeroed data."""
        if sec.size > _MAX_NOBITS:
            raise BPFLoadError(
                f"section {sec.name!r} claims {sec.size} bytes of zeros (at most {_MAX_NOBITS})"
            )

    def _symbols(self) -> list[Symbol]:
        tabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not tabs:
            return []
        tab = tabs[0]
        if tab.entsize != _SYM.size or tab.size % _SYM.size:
            raise BPFLoadError(
                f"symbol table: entry size {tab.entsize} and table size {tab.size} "
                f"do not make whole {_SYM.size}-byte entries"
            )
        if tab.link >= len(self.sections):
            raise BPFLoadError("symbol table names a missing string table")
        strtab = self.content(self.sections[tab.link])
        data = self.content(tab)
        out = []
        for i in range(tab.size // _SYM.size):
            name_off, info, _other, shndx, value, size = _SYM.unpack_from(data, i * _SYM.size)
            if 0 < shndx < SHN_LORESERVE and shndx >= len(self.sections):
                raise BPFLoadError(f"symbol {i} refers to missing section {shndx}")
            out.append(
                Symbol(
                    _cstr(strtab, name_off, f"symbol {i} name"),
                    value,
                    size,
                    shndx if 0 < shndx < SHN_LORESERVE else -1,
                    info & 0xF,
                    info >> 4,
                )
            )
        return out

    def relocations(self, sec: Section) -> list[tuple[int, int]]:
        """(offset, symbol index) pairs of an SHT_REL section."""
        if sec.entsize not in (0, _REL.size) or sec.size % _REL.size:
            raise BPFLoadError(f"relocation section {sec.name!r} has bad entry size")
        data = self.content(sec)
        out = []
        for i in range(sec.size // _REL.size):
            off, info = _REL.unpack_from(data, i * _REL.size)
            out.append((off, info >> 32))
        return out


def _cstr(table: bytes, off: int, what: str) -> str:
    if off == 0:
        return ""
    if off >= len(table):
        raise BPFLoadError(f"{what}: string offset {off} outside its table")
    end = table.find(b"\0", off)
    if end < 0:
        raise BPFLoadError(f"{what}: string at {off} is not NUL-terminated")
    return table[off:end].decode("utf-8", errors="replace")
