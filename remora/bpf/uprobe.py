"""Where a uprobe goes: a binary's path, and a symbol's offset inside the file.

The kernel wants a file offset, while symbol tables give virtual addresses: the PT_LOAD
segment holding the address converts one to the other. Binaries are ordinary ELF executables
and shared libraries, which pyelftools reads well; remora's own ELF reader is only for BPF
objects.
"""

from __future__ import annotations

import functools
import os
import shutil

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from remora.bpf.errors import BPFError

_LIB_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)


def resolve_binary(name: str) -> str:
    """An absolute path as given; a library name (libc.so.6) from the usual library
    directories; a command name from PATH."""
    if os.path.isabs(name):
        if not os.path.isfile(name):
            raise BPFError(f"uprobe target {name}: no such file")
        return os.path.realpath(name)
    if ".so" in name:
        for d in _LIB_DIRS:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return os.path.realpath(path)
    found = shutil.which(name)
    if found is None:
        raise BPFError(f"uprobe target {name!r}: not a path, a library or a command on PATH")
    return os.path.realpath(found)


@functools.cache
def symbol_offset(path: str, symbol: str) -> int:
    """The file offset of a defined function symbol (.symtab first, then .dynsym)."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            address = _symbol_address(elf, symbol)
            if address is None:
                raise BPFError(f"uprobe target {path}: no function symbol {symbol!r}")
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_LOAD":
                    continue
                start = seg["p_vaddr"]
                if start <= address < start + seg["p_memsz"]:
                    return int(address - start + seg["p_offset"])
    except (OSError, ELFError) as e:
        raise BPFError(f"uprobe target {path}: cannot read it as ELF: {e}") from None
    raise BPFError(f"uprobe target {path}: {symbol!r} lies in no loadable segment")


def _symbol_address(elf: ELFFile, symbol: str) -> int | None:
    for name in (".symtab", ".dynsym"):
        table = elf.get_section_by_name(name)
        if not isinstance(table, SymbolTableSection):
            continue
        for sym in table.get_symbol_by_name(symbol) or ():
            if sym["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and sym["st_value"]:
                return int(sym["st_value"])
    return None
