"""`remora bpf gen`: a Python module of ctypes types and typed accessors, made from BTF.

Hand-written ctypes mirrors of BPF structs drift from the C. A generated module cannot drift,
because it is made from the object's own BTF, and each generated type is still checked against
that BTF when a map is typed with it. The output is plain source with no run-time dependency on
this generator, meant to be committed next to the object, as bpf2go's output and libbpf
skeletons are.
"""

from __future__ import annotations

import keyword
import re

from remora.bpf.btf.types import Kind, Spec, Type
from remora.bpf.elf import CollectionSpec
from remora.bpf.errors import BPFError
from remora.bpf.layout import alignment

_INT = {
    (1, False): "ctypes.c_uint8",
    (1, True): "ctypes.c_int8",
    (2, False): "ctypes.c_uint16",
    (2, True): "ctypes.c_int16",
    (4, False): "ctypes.c_uint32",
    (4, True): "ctypes.c_int32",
    (8, False): "ctypes.c_uint64",
    (8, True): "ctypes.c_int64",
}
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4


def _ident(name: str) -> str:
    """A Python identifier for a C name (".rodata" -> "rodata", "from" -> "from_")."""
    out = re.sub(r"\W", "_", name).strip("_") or "anon"
    if out[0].isdigit():
        out = "_" + out
    return out + "_" if keyword.iskeyword(out) else out


class _Writer:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.names: dict[int, str] = {}  # type id -> Python expression for it
        self.blocks: list[str] = []
        self.taken: set[str] = set()
        self.busy: set[int] = set()

    def expr(self, tid: int) -> str:
        """The ctypes expression for a type, emitting the classes it needs first."""
        if tid in self.names:
            return self.names[tid]
        t = self.spec.type(tid)
        if t.kind in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
            return self.expr(t.ref)
        if t.kind == Kind.TYPEDEF:
            target = self.expr(t.ref)
            name = self._claim(t.name)
            self.blocks.append(f"{name} = {target}")
            self.names[tid] = name
            return name
        if t.kind == Kind.INT:
            signed = bool(t.int_encoding & _INT_SIGNED)
            if t.int_encoding & _INT_BOOL and t.size == 1:
                return "ctypes.c_bool"
            if t.size == 1 and (t.int_encoding & _INT_CHAR or t.name == "char"):
                return "ctypes.c_char"
            expr = _INT.get((t.size, signed))
            return expr if expr is not None else f"(ctypes.c_uint8 * {t.size})"
        if t.kind == Kind.FLOAT:
            return {4: "ctypes.c_float", 8: "ctypes.c_double"}.get(
                t.size, f"(ctypes.c_uint8 * {t.size})"
            )
        if t.kind == Kind.PTR:
            return "ctypes.c_uint64"  # a kernel or BPF address: a number to user space
        if t.kind == Kind.ARRAY:
            return f"({self.expr(t.elem)} * {t.nelems})"
        if t.kind in (Kind.ENUM, Kind.ENUM64):
            return self._enum(t)
        if t.kind in (Kind.STRUCT, Kind.UNION):
            return self._record(t)
        if t.kind == Kind.FWD:
            return "ctypes.c_uint8"  # an opaque type, only ever behind a pointer in BPF
        raise BPFError(f"gen: BTF type {tid} ({t.kind.name}) has no ctypes form")

    def _claim(self, name: str) -> str:
        base = _ident(name)
        candidate, n = base, 2
        while candidate in self.taken:
            candidate, n = f"{base}_{n}", n + 1
        self.taken.add(candidate)
        return candidate

    def _enum(self, t: Type) -> str:
        signed = any(v < 0 for _, v in t.enum_values)
        ctype = _INT.get((t.size, signed), "ctypes.c_uint32")
        if not t.name:
            return ctype
        name = self._claim(t.name)
        lines = [f"class {name}(enum.IntEnum):"]
        lines += [f"    {_ident(e)} = {v}" for e, v in t.enum_values] or ["    pass"]
        lines.append(f"\n\n{name}_ctype = {ctype}")
        self.blocks.append("\n".join(lines))
        self.names[t.id] = f"{name}_ctype"
        return f"{name}_ctype"

    def _record(self, t: Type) -> str:
        if t.id in self.busy:  # self-reference can only be through a pointer, handled above
            raise BPFError(f"gen: {self.spec.type_name(t.id)} contains itself")
        self.busy.add(t.id)
        kind = "Structure" if t.kind == Kind.STRUCT else "Union"
        name = self._claim(t.name or f"anon_{t.id}")
        self.names[t.id] = name
        fields: list[str] = []
        anonymous: list[str] = []
        for i, m in enumerate(t.members):
            mexpr = self.expr(m.type)
            mname = _ident(m.name) if m.name else f"_anon{i}"
            if not m.name:
                anonymous.append(mname)
            if m.bitfield_size:
                fields.append(f'        ("{mname}", {mexpr}, {m.bitfield_size}),')
            else:
                fields.append(f'        ("{mname}", {mexpr}),')
        lines = [f"class {name}(ctypes.{kind}):"]
        if t.kind == Kind.STRUCT and alignment(self.spec, t.id) == 1 and t.size > 1:
            lines.append("    _pack_ = 1")
        if anonymous:
            names = ", ".join(f'"{a}"' for a in anonymous)
            lines.append(f"    _anonymous_ = ({names},)")
        lines.append("    _fields_ = [")
        lines += fields
        lines.append("    ]")
        lines.append(f"\n\nassert ctypes.sizeof({name}) == {t.size}")
        self.blocks.append("\n".join(lines))
        self.busy.discard(t.id)
        return name


def generate(spec: CollectionSpec, object_path: str) -> str:
    """The module's source text."""
    if spec.btf is None:
        raise BPFError(f"{spec.path}: no BTF (build with clang -g): nothing to generate from")
    writer = _Writer(spec.btf)
    map_types: dict[str, tuple[str | None, str | None]] = {}
    for name, ms in spec.maps.items():
        key = writer.expr(ms.key_type[1]) if ms.key_type is not None else None
        value = writer.expr(ms.value_type[1]) if ms.value_type is not None else None
        map_types[name] = (key, value)
    body = "\n\n\n".join(writer.blocks)
    maps = []
    for name, (key, value) in map_types.items():
        args = "".join(f", {v}" for v in (key or "None", value) if v) if (key or value) else ""
        maps.append(f'        self.{_ident(name)} = _typed(coll, "{name}"{args})')
    progs = [
        f'        self.{_ident(n)} = coll.programs.get("{n}")  # None unless loaded'
        for n in spec.programs
    ]
    return _TEMPLATE.format(
        source=object_path,
        types=body or "# (no types)",
        maps="\n".join(maps) or "        pass",
        programs="\n".join(progs) or "        pass",
        path=object_path,
        enum_import="import enum\n" if "(enum.IntEnum)" in body else "",
        ctypes_import="import ctypes\n" if "ctypes." in body else "",
    )


_TEMPLATE = '''"""ctypes types and typed accessors, generated by `remora bpf gen` from
{source}.

Regenerate after changing the BPF program; do not edit by hand.
"""

from __future__ import annotations

{ctypes_import}{enum_import}from typing import Any, Self

from remora.bpf.collection import Collection
from remora.bpf.maps import Map

OBJECT = "{path}"

{types}


def _typed(coll: Collection, name: str, key: Any = None, value: Any = None) -> Map | None:
    found = coll.maps.get(name)
    return None if found is None else found.with_types(key=key, value=value)


class Maps:
    """Every map of the object, typed with the classes above where BTF names the types
    (None for a map that a partial load, `programs=[...]`, left out)."""

    def __init__(self, coll: Collection) -> None:
{maps}


class Programs:
    def __init__(self, coll: Collection) -> None:
{programs}


class Objects:
    """The loaded object: `maps` and `programs` by attribute. Close it, or use `with`."""

    def __init__(self, coll: Collection) -> None:
        self.collection = coll
        self.maps = Maps(coll)
        self.programs = Programs(coll)

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(path: str = OBJECT, **options: Any) -> Objects:
    """Load the object (Collection.load's options apply: constants=, programs=, ...)."""
    return Objects(Collection.load(path, **options))
'''
