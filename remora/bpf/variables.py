"""Global variables of a loaded object, read and written by name, in their BTF types.

A program's globals live in the `.data`, `.bss` and `.rodata` array maps, one value each. This
is the user-space side of a libbpf skeleton's `skel->bss->counter`: `Variables(coll)["counter"]`
reads the live value and decodes it through the object's BTF (ints, structs as dicts, char
arrays as text). Assigning writes it back. `view(name, ctype)` gives a ctypes copy of the value,
checked against BTF as typed maps are.

Writes read the section's value, change the variable's bytes, and write the value back. A
program that writes a neighbouring variable between those two steps loses its write. That is
the price of not mapping the section, and is fine for configuration knobs. Constants
(`.rodata*`) are frozen at load, so they refuse writes and point to `constants=`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Mapping
from typing import Any

from remora.bpf.btf.check import check_ctype
from remora.bpf.btf.decode import decode
from remora.bpf.btf.types import Kind
from remora.bpf.collection import Collection
from remora.bpf.elf import VariableSpec, _to_bytes
from remora.bpf.errors import BPFError
from remora.bpf.maps import Map


class Variables(Mapping[str, Any]):
    """Name -> current value of every global variable the collection loaded."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self._specs = {n: v for n, v in coll.spec.variables.items() if v.map_name in coll.maps}

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
        m = self.coll.maps[var.map_name]
        current = bytearray(_section_value(m))
        current[var.offset : var.offset + var.size] = _to_bytes(value, var.size, name)
        m.update_bytes(bytes(4), bytes(current))

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def raw(self, name: str) -> bytes:
        """The variable's bytes as the kernel holds them now."""
        var = self._var(name)
        value = _section_value(self.coll.maps[var.map_name])
        return value[var.offset : var.offset + var.size]

    def view(self, name: str, ctype: Any) -> Any:
        """A ctypes copy of the value, its layout checked against the variable's BTF type."""
        var = self._var(name)
        tid = self._type_id(var)
        if tid and self.coll.spec.btf is not None:
            check_ctype(ctype, (self.coll.spec.btf, tid), f"variable {name!r}")
        elif ctypes.sizeof(ctype) != var.size:
            raise BPFError(f"variable {name!r} is {var.size} bytes, {ctype.__name__} is not")
        return ctype.from_buffer_copy(self.raw(name))

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
            t = btf.type(si.type)
            if t.kind == Kind.VAR and t.name == var.name:
                return t.ref
        return 0


def _section_value(m: Map) -> bytes:
    """The single value of a global data map, as bytes whatever codec the map has."""
    value = m.lookup(0)
    return value if isinstance(value, bytes) else int(value).to_bytes(m.value_size, "little")
