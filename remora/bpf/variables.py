"""Global variables of a loaded object, read and written by name, in their BTF types.

A program's globals live in the `.data`, `.bss` and `.rodata` array maps, one value each. The
loader makes those maps mmapable, as libbpf does, so this is the user-space side of a libbpf
skeleton's `skel->bss->counter`. `Variables(coll)["counter"]` reads the live value straight
from the mapping and decodes it through the object's BTF (ints, structs as dicts, char arrays
as text). Assigning stores the variable's bytes in place, so a neighbouring variable that the
program writes at the same moment is not disturbed. `view(name, ctype)` is a ctypes object
over the variable's own bytes, checked against BTF as typed maps are: writing a field writes
the program's variable.

Constants (`.rodata*`) are frozen at load and mapped read-only, so they refuse writes and
point to `constants=`, and their views are copies. A data map made without BPF_F_MMAPABLE (an
older object loaded by an older remora and pinned, say) is read and written with map
lookups and updates instead.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator, Mapping
from typing import Any

from remora.bpf.btf.check import check_ctype
from remora.bpf.btf.decode import decode
from remora.bpf.btf.types import Kind
from remora.bpf.collection import Collection
from remora.bpf.elf import VariableSpec, _to_bytes
from remora.bpf.errors import BPFError
from remora.bpf.maps import Map
from remora.bpf.records import map_shared, unmap
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import Closing


class Variables(Mapping[str, Any], Closing):
    """Name -> current value of every global variable the collection loaded. Close it (or use
    `with`) to unmap the sections; views taken from it keep their memory alive until dropped."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self._specs = {n: v for n, v in coll.spec.variables.items() if v.map_name in coll.maps}
        self._maps: dict[str, tuple[mmap.mmap, memoryview] | None] = {}

    def __getitem__(self, name: str) -> Any:
        var = self._var(name)
        raw = self.raw(name)
        tid = self._type_id(var)
        if tid:
            return decode(self.coll.spec.btf, tid, raw)  # type: ignore[arg-type]
        return int.from_bytes(raw, "little") if var.scalar else raw

    def __setitem__(self, name: str, value: Any) -> None:
        var = self._var(name)
        if var.constant:
            raise BPFError(
                f"variable {name!r} is a constant (in {var.map_name}, frozen at load): "
                "set it with Collection.load(..., constants={...})"
            )
        if isinstance(value, bool | int) and not var.scalar:
            raise BPFError(f"variable {name!r} is {var.type_name}: give bytes or a ctypes value")
        raw = _to_bytes(value, var.size, name)
        mapped = self._mapping(var)
        if mapped is not None:
            mapped[1][var.offset : var.offset + var.size] = raw
            return
        m = self.coll.maps[var.map_name]
        current = bytearray(_section_value(m))
        current[var.offset : var.offset + var.size] = raw
        m.update_bytes(bytes(4), bytes(current))

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def raw(self, name: str) -> bytes:
        """The variable's bytes as the kernel holds them now."""
        var = self._var(name)
        mapped = self._mapping(var)
        if mapped is not None:
            return bytes(mapped[1][var.offset : var.offset + var.size])
        value = _section_value(self.coll.maps[var.map_name])
        return value[var.offset : var.offset + var.size]

    def view(self, name: str, ctype: Any) -> Any:
        """A ctypes object over the variable, its layout checked against the variable's BTF
        type: live (writes reach the program) for writable sections, a copy for constants."""
        var = self._var(name)
        tid = self._type_id(var)
        if tid and self.coll.spec.btf is not None:
            check_ctype(ctype, (self.coll.spec.btf, tid), f"variable {name!r}")
        elif ctypes.sizeof(ctype) != var.size:
            raise BPFError(f"variable {name!r} is {var.size} bytes, {ctype.__name__} is not")
        mapped = self._mapping(var)
        if mapped is not None and not var.constant:
            return ctype.from_buffer(mapped[0], var.offset)
        return ctype.from_buffer_copy(self.raw(name))

    def close(self) -> None:
        for mapped in self._maps.values():
            if mapped is not None:
                unmap(mapped[0], [mapped[1]])
        self._maps.clear()

    def _mapping(self, var: VariableSpec) -> tuple[mmap.mmap, memoryview] | None:
        if var.map_name not in self._maps:
            m = self.coll.maps[var.map_name]
            if not m.flags & t.BPF_F_MMAPABLE:
                self._maps[var.map_name] = None
            else:
                size = (m.value_size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
                mm = map_shared(m.fd.raw, size, 0, writable=not var.constant)
                self._maps[var.map_name] = (mm, memoryview(mm))
        return self._maps[var.map_name]

    def _var(self, name: str) -> VariableSpec:
        var = self._specs.get(name)
        if var is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise BPFError(f"no loaded global variable {name!r} (variables: {known})")
        return var

    def _type_id(self, var: VariableSpec) -> int:
        btf = self.coll.spec.btf
        if btf is None:
            return 0
        ds = btf.by_name(var.map_name, Kind.DATASEC)
        if ds is None:
            return 0
        for si in ds.secinfo:
            vt = btf.type(si.type)
            if vt.kind == Kind.VAR and vt.name == var.name:
                return vt.ref
        return 0


def _section_value(m: Map) -> bytes:
    """The single value of a global data map, as bytes whatever codec the map has."""
    value = m.lookup(0)
    return value if isinstance(value, bytes) else int(value).to_bytes(m.value_size, "little")
