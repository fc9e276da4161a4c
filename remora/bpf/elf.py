"""Read a BPF ELF object into a `CollectionSpec`: programs, maps, global variables, BTF.

`elffile` reads the ELF container; everything BPF-specific is ours: libbpf's section
conventions (`sections`), BTF-defined `.maps` and legacy `maps`, global data sections as
single-entry array maps, and static linking of each program with the subprograms it calls
(`link`). Nothing here touches the kernel, so `remora bpf inspect` can run anywhere.

Any malformed input becomes a `BPFLoadError` naming the file and the part that is wrong.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import struct
from typing import Any

from remora.bpf.btf.ext import Ext, parse_ext
from remora.bpf.btf.types import Kind, Spec
from remora.bpf.elffile import (
    SHF_EXECINSTR,
    SHT_NOBITS,
    SHT_PROGBITS,
    SHT_REL,
    STB_GLOBAL,
    STB_LOCAL,
    STT_FUNC,
    STT_OBJECT,
    STT_SECTION,
    ElfFile,
    Section,
    Symbol,
)
from remora.bpf.errors import BPFError, BPFLoadError
from remora.bpf.externs import KCONFIG_SEC, Extern, collect_externs, kconfig_size
from remora.bpf.linker import CodeSection, Function, link_program
from remora.bpf.maps import MapSpec
from remora.bpf.prog import ProgramSpec
from remora.bpf.sections import match_section
from remora.bpf.sys import types as t

_DATA_PREFIXES = (".data", ".rodata", ".bss")
_VAR_GLOBAL = 1  # BTF_VAR_GLOBAL_ALLOCATED
_LINKAGE = {0: "static", 1: "global", 2: "extern"}
_LEGACY_FIELDS = 28  # type, key_size, value_size, max_entries, map_flags, inner_map_idx, numa
_STRUCT_OPS_SECTIONS = (".struct_ops", ".struct_ops.link")
_STRUCT_OPS_REASON = (
    "struct_ops (a kernel struct of BPF callbacks, such as tcp_congestion_ops) is not "
    "supported by remora yet"
)
_INIT_TYPES = (t.MapType.PROG_ARRAY, t.MapType.ARRAY_OF_MAPS, t.MapType.HASH_OF_MAPS)
_MAP_ATTRS = (
    "type",
    "max_entries",
    "map_flags",
    "numa_node",
    "key_size",
    "value_size",
    "pinning",
    "map_extra",
)


@dataclasses.dataclass
class VariableSpec:
    """A global variable inside a data-section map, readable and settable before load."""

    name: str
    map_name: str  # the data section, e.g. ".rodata"
    offset: int
    size: int
    type_name: str
    map: MapSpec

    @property
    def constant(self) -> bool:
        return self.map_name.startswith(".rodata")

    @property
    def scalar(self) -> bool:
        """An integer (or a pointer-sized scalar); arrays, structs and unions are not."""
        if self.size > 8 or self.type_name.endswith("]"):
            return False
        return not any(w in self.type_name.split() for w in ("struct", "union"))

    def get(self, limit: int | None = None) -> bytes:
        """The initial value, or its first `limit` bytes (inspect shows no more than that)."""
        size = self.size if limit is None else min(self.size, limit)
        data = self.map.initial_data
        if data is None:  # .bss and other NOBITS sections: zeros, made only as far as asked
            return bytes(size)
        return data[self.offset : self.offset + size]

    def set(self, value: Any) -> None:
        if isinstance(value, bool | int) and not self.scalar:
            # An int would be spread over the struct's bytes, filling fields nobody meant to.
            raise BPFError(
                f"variable {self.name!r} is {self.type_name or 'not an integer'} "
                f"({self.size} bytes): give bytes or a ctypes value, not an integer"
            )
        raw = _to_bytes(value, self.size, self.name)
        data = bytearray(self.map.initial_data or bytes(self.map.value_size))
        data[self.offset : self.offset + self.size] = raw
        self.map.initial_data = bytes(data)


def _to_bytes(value: Any, size: int, name: str) -> bytes:
    if isinstance(value, bool | int):
        if int(value) < 0:
            value = int(value) + (1 << (8 * size))
        try:
            return int(value).to_bytes(size, "little")
        except OverflowError:
            raise BPFError(f"variable {name!r}: {value} does not fit in {size} bytes") from None
    if isinstance(value, ctypes.Structure | ctypes.Union | ctypes.Array):
        value = bytes(value)
    if isinstance(value, bytes | bytearray):
        if len(value) != size:
            raise BPFError(f"variable {name!r} is {size} bytes, got {len(value)}")
        return bytes(value)
    raise BPFError(f"variable {name!r}: cannot store {type(value).__name__}")


@dataclasses.dataclass
class CollectionSpec:
    path: str
    programs: dict[str, ProgramSpec]
    maps: dict[str, MapSpec]
    variables: dict[str, VariableSpec]
    license: str
    kern_version: int
    btf: Spec | None
    btf_raw: bytes | None  # BTF fixed up for the kernel (DATASEC sizes/offsets)
    externs: dict[str, Extern] = dataclasses.field(default_factory=dict)

    def set_constants(self, constants: dict[str, Any]) -> None:
        for name, value in constants.items():
            var = self.variables.get(name)
            if var is None:
                known = ", ".join(sorted(self.variables)) or "none"
                raise BPFError(f"{self.path}: no global variable {name!r} (variables: {known})")
            var.set(value)


def read_elf(path: str | os.PathLike[str]) -> CollectionSpec:
    """Parse an object file. Raises BPFLoadError for anything malformed."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BPFLoadError(f"{p}: cannot read: {e.strerror}") from None
    return read_elf_bytes(data, p)


def read_elf_bytes(data: bytes, name: str = "<bytes>") -> CollectionSpec:
    try:
        return _Reader(data, name).read()
    except BPFLoadError as e:
        if str(e).startswith(name):
            raise
        raise BPFLoadError(f"{name}: {e}") from None
    except BPFError:
        raise
    except Exception as e:
        # Every check we know of raises BPFLoadError itself; this is the backstop that keeps
        # "never a traceback" true for checks we have not thought of yet.
        raise BPFLoadError(
            f"{name}: unreadable object (unchecked case, please report): {type(e).__name__}: {e}"
        ) from None


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.elf = ElfFile(data)
        self.sections: list[Section] = self.elf.sections
        self.symbols: list[Symbol] = self.elf.symbols
        self.rels: dict[int, dict[int, Symbol]] = {}
        for sec in self.sections:
            if sec.type == SHT_REL:
                if sec.info >= len(self.sections):
                    raise BPFLoadError(f"{sec.name} relocates missing section {sec.info}")
                target = self.sections[sec.info]
                if not (target.flags & SHF_EXECINSTR or target.name == ".maps"):
                    continue  # DWARF and other data relocations: never applied, so not read
                table: dict[int, Symbol] = self.rels.setdefault(sec.info, {})
                for off, idx in self.elf.relocations(sec):
                    if idx >= len(self.symbols):
                        raise BPFLoadError(f"relocation in {sec.name} names missing symbol {idx}")
                    table[off] = self.symbols[idx]
        self.btf: Spec | None = None
        self.ext: Ext | None = None
        self.externs: dict[str, Extern] = {}

    def read(self) -> CollectionSpec:
        btf_sec = self.elf.section(".BTF")
        if btf_sec is not None:
            self.btf = Spec(self.elf.content(btf_sec))
            ext_sec = self.elf.section(".BTF.ext")
            if ext_sec is not None:
                self.ext = parse_ext(self.elf.content(ext_sec), self.btf.strings)
        license = self._license()
        kern_version = self._kern_version()
        self.externs = collect_externs(self.symbols, self.btf)
        maps: dict[str, MapSpec] = {}
        map_syms: dict[tuple[int, int], str] = {}
        self._btf_maps(maps, map_syms)
        self._legacy_maps(maps, map_syms)
        variables = self._data_maps(maps)
        self._struct_ops_maps(maps)
        self._kconfig_map(maps)
        programs = self._programs(maps, map_syms, license, kern_version)
        self._init_values(maps, programs)
        btf_raw = None
        if self.btf is not None:
            from remora.bpf.btf.fixup import fixup_btf

            sizes = self._section_sizes()
            offsets = self._var_offsets()
            if KCONFIG_SEC in maps:
                sizes[KCONFIG_SEC] = maps[KCONFIG_SEC].value_size
                offsets.update((e.name, e.offset) for e in self.externs.values())
            btf_raw = fixup_btf(self.btf, sizes, offsets)
        return CollectionSpec(
            self.name,
            programs,
            maps,
            variables,
            license,
            kern_version,
            self.btf,
            btf_raw,
            self.externs,
        )

    # small sections ---------------------------------------------------------------------
    def _license(self) -> str:
        sec = self.elf.section("license")
        if sec is None:
            return ""
        return self.elf.content(sec).split(b"\0", 1)[0].decode(errors="replace")

    def _kern_version(self) -> int:
        sec = self.elf.section("version")
        if sec is None or sec.size < 4:
            return 0
        return int(struct.unpack_from("<I", self.elf.content(sec))[0])

    def _section_sizes(self) -> dict[str, int]:
        return {s.name: s.size for s in self.sections if s.name}

    def _var_offsets(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for sym in self.symbols:
            if sym.type == STT_OBJECT and sym.shndx > 0:
                out[sym.name] = sym.value
        return out

    # maps -------------------------------------------------------------------------------
    def _btf_maps(self, maps: dict[str, MapSpec], map_syms: dict[tuple[int, int], str]) -> None:
        sec = self.elf.section(".maps")
        if sec is None:
            return
        if self.btf is None:
            raise BPFLoadError(".maps section without .BTF: BTF-defined maps need BTF (clang -g)")
        shndx = sec.num
        datasec = self.btf.by_name(".maps", Kind.DATASEC)
        if datasec is None:
            raise BPFLoadError(".maps section has no BTF DATASEC")
        offsets = {s.name: s.value for s in self.symbols if s.shndx == shndx and s.name}
        for si in datasec.secinfo:
            var = self.btf.type(si.type)
            if var.kind != Kind.VAR:
                raise BPFLoadError(f".maps: entry {var.name!r} is {var.kind.name}, not a variable")
            if var.linkage != _VAR_GLOBAL:
                # libbpf and cilium/ebpf refuse these too: nothing outside can name the map.
                raise BPFLoadError(
                    f"map {var.name!r}: unsupported map linkage "
                    f"{_LINKAGE.get(var.linkage, var.linkage)} (drop `static`)"
                )
            spec = self._map_from_btf(var.name, var.ref)
            if var.name not in offsets:
                raise BPFLoadError(f".maps: no symbol for map {var.name!r}")
            maps[var.name] = spec
            map_syms[(shndx, offsets[var.name])] = var.name

    def _map_from_btf(self, name: str, tid: int, inner: bool = False) -> MapSpec:
        assert self.btf is not None
        st = self.btf.skip_mods(tid)
        if st.kind != Kind.STRUCT:
            raise BPFLoadError(f"map {name!r}: definition is {st.kind.name}, not a struct")
        attrs: dict[str, int] = {}
        key_id = value_id = 0
        inner_spec: MapSpec | None = None
        for m in st.members:
            mt = self.btf.skip_mods(m.type)
            if m.name in _MAP_ATTRS and mt.kind in (Kind.ENUM, Kind.ENUM64):
                # __ulong(name, value): a one-value enum, for attributes wider than 32 bits.
                if len(mt.enum_values) != 1:
                    raise BPFLoadError(f"map {name!r}: {m.name} enum must hold exactly one value")
                attrs[m.name] = mt.enum_values[0][1] & 0xFFFFFFFFFFFFFFFF
            elif m.name in _MAP_ATTRS:
                if mt.kind != Kind.PTR:
                    raise BPFLoadError(f"map {name!r}: {m.name} must be __uint(...)")
                arr = self.btf.skip_mods(mt.ref)
                if arr.kind != Kind.ARRAY:
                    raise BPFLoadError(f"map {name!r}: {m.name} must be __uint(...)")
                attrs[m.name] = arr.nelems
            elif m.name in ("key", "value"):
                if mt.kind != Kind.PTR:
                    raise BPFLoadError(f"map {name!r}: {m.name} must be __type(...)")
                if m.name == "key":
                    key_id = mt.ref
                else:
                    value_id = mt.ref
            elif m.name == "values":
                if mt.kind != Kind.ARRAY:
                    raise BPFLoadError(f"map {name!r}: values must be __array(...)")
                elem = self.btf.skip_mods(mt.elem)
                target = self.btf.skip_mods(elem.ref) if elem.kind == Kind.PTR else elem
                if target.kind == Kind.STRUCT:
                    inner_spec = self._map_from_btf(name + ".inner", target.id, inner=True)
            else:
                raise BPFLoadError(f"map {name!r}: unknown attribute {m.name!r}")
        if "type" not in attrs:
            raise BPFLoadError(f"map {name!r}: missing type")
        try:
            mtype = t.MapType(attrs["type"])
        except ValueError:
            raise BPFLoadError(f"map {name!r}: unknown map type {attrs['type']}") from None
        key_size = attrs.get("key_size", 0)
        value_size = attrs.get("value_size", 0)
        if key_id:
            size = self.btf.sizeof(key_id)
            if key_size and key_size != size:
                raise BPFLoadError(f"map {name!r}: key_size {key_size} != sizeof(key) {size}")
            key_size = size
        if value_id:
            size = self.btf.sizeof(value_id)
            if value_size and value_size != size:
                raise BPFLoadError(f"map {name!r}: value_size {value_size} != sizeof(value) {size}")
            value_size = size
        if inner_spec is not None or mtype in (t.MapType.PROG_ARRAY,):
            value_size = value_size or 4
        spec = MapSpec(
            name,
            mtype,
            key_size,
            value_size,
            attrs.get("max_entries", 0),
            flags=attrs.get("map_flags", 0),
            inner=inner_spec,
            pinning=attrs.get("pinning", 0),
            numa_node=attrs.get("numa_node", 0),
            map_extra=attrs.get("map_extra", 0),
        )
        if key_id and value_id and not inner:
            spec.btf_key_type_id = key_id
            spec.btf_value_type_id = value_id
        spec.key_type = (self.btf, key_id) if key_id else None
        spec.value_type = (self.btf, value_id) if value_id else None
        if inner_spec is not None:
            spec.key_size = spec.key_size or 4
        return spec

    def _legacy_maps(self, maps: dict[str, MapSpec], map_syms: dict[tuple[int, int], str]) -> None:
        """`struct bpf_map_def` records in the `maps` section, one per object symbol.

        A symbol's own size bounds its record, as clang and static linkers both set it; a
        linked object may hold records that no symbol names any more (the losing side of a weak
        definition), which are skipped. Old objects with unsized symbols fall back to an equal
        share of the section each. Bytes past the fields we know must be zero, as libbpf
        demands, so an option we would silently drop fails instead.
        """
        sec = self.elf.section("maps")
        if sec is None:
            return
        shndx = sec.num
        syms = sorted(
            (s for s in self.symbols if s.shndx == shndx and s.name and s.type != STT_SECTION),
            key=lambda s: s.value,
        )
        if not syms:
            return
        data = self.elf.content(sec)
        share = len(data) // len(syms)
        for sym in syms:
            if sym.bind == STB_LOCAL:
                raise BPFLoadError(
                    f"map {sym.name!r}: unsupported map linkage static (drop `static`)"
                )
            size = sym.size or share
            if size < 16 or sym.value + size > len(data):
                raise BPFLoadError(
                    f"maps: definition of {sym.name!r} ({size} bytes at {sym.value}) does not "
                    f"fit the {len(data)}-byte section"
                )
            record = data[sym.value : sym.value + size]
            if any(record[_LEGACY_FIELDS:]):
                raise BPFLoadError(
                    f"maps: {sym.name!r} has unrecognized, non-zero options past byte "
                    f"{_LEGACY_FIELDS}"
                )
            known = record[:_LEGACY_FIELDS] + bytes(max(0, _LEGACY_FIELDS - size))
            words = struct.unpack("<7I", known)
            try:
                mtype = t.MapType(words[0])
            except ValueError:
                raise BPFLoadError(f"maps: {sym.name!r} has unknown map type {words[0]}") from None
            maps[sym.name] = MapSpec(
                sym.name,
                mtype,
                words[1],
                words[2],
                words[3],
                flags=words[4],
                numa_node=words[6],
            )
            map_syms[(shndx, sym.value)] = sym.name

    def _data_maps(self, maps: dict[str, MapSpec]) -> dict[str, VariableSpec]:
        variables: dict[str, VariableSpec] = {}
        for idx, sec in enumerate(self.sections):
            name = sec.name
            if not any(name == p or name.startswith(p + ".") for p in _DATA_PREFIXES):
                continue
            if sec.flags & SHF_EXECINSTR or sec.type not in (
                SHT_PROGBITS,
                SHT_NOBITS,
            ):
                continue
            size = sec.size
            if size == 0:
                continue
            readonly = name.startswith(".rodata")
            initial: bytes | None = None  # NOBITS: the kernel's array map starts zeroed
            if sec.type == SHT_NOBITS:
                self.elf.check_nobits(sec)
            else:
                initial = self.elf.content(sec)
                if len(initial) != size:
                    raise BPFLoadError(f"section {name}: data is truncated")
            spec = MapSpec(
                name,
                t.MapType.ARRAY,
                4,
                size,
                1,
                # mmapable, as libbpf makes them: user space reads and writes variables in place
                flags=t.BPF_F_MMAPABLE | (t.BPF_F_RDONLY_PROG if readonly else 0),
                initial_data=initial,
                freeze=readonly,
            )
            if self.btf is not None:
                ds = self.btf.by_name(name, Kind.DATASEC)
                if ds is not None:
                    spec.btf_key_type_id = 0
                    spec.btf_value_type_id = ds.id
            maps[name] = spec
            btf_types = self._datasec_var_types(name)
            for sym in self.symbols:
                if sym.shndx != idx or sym.type != STT_OBJECT or not sym.name:
                    continue
                if sym.value + sym.size > size:
                    raise BPFLoadError(f"variable {sym.name!r} lies outside section {name}")
                variables[sym.name] = VariableSpec(
                    sym.name, name, sym.value, sym.size, btf_types.get(sym.name, ""), spec
                )
        return variables

    def _struct_ops_maps(self, maps: dict[str, MapSpec]) -> None:
        """Each variable of a `.struct_ops` section is one struct_ops map. They are listed so
        that inspect shows them, and refused by name when they are created."""
        for sec in self.sections:
            if sec.name not in _STRUCT_OPS_SECTIONS:
                continue
            for sym in self.symbols:
                if sym.shndx != sec.num or sym.type != STT_OBJECT or not sym.name:
                    continue
                spec = MapSpec(sym.name, t.MapType.STRUCT_OPS, 4, sym.size, 1)
                type_name = self._datasec_var_types(sec.name).get(sym.name, "")
                spec.unsupported = f"{type_name or 'struct_ops'}: {_STRUCT_OPS_REASON}"
                maps[sym.name] = spec

    def _kconfig_map(self, maps: dict[str, MapSpec]) -> None:
        """One read-only array map holds every `.kconfig` value, as in libbpf; its bytes are
        the running kernel's, filled in when the map is made (`kconfig.kconfig_data`)."""
        size = kconfig_size(self.externs)
        if not size:
            return
        spec = MapSpec(
            KCONFIG_SEC, t.MapType.ARRAY, 4, size, 1, flags=t.BPF_F_RDONLY_PROG, freeze=True
        )
        if self.btf is not None:
            ds = self.btf.by_name(KCONFIG_SEC, Kind.DATASEC)
            if ds is not None:
                spec.btf_value_type_id = ds.id
        maps[KCONFIG_SEC] = spec

    def _datasec_var_types(self, secname: str) -> dict[str, str]:
        if self.btf is None:
            return {}
        ds = self.btf.by_name(secname, Kind.DATASEC)
        if ds is None:
            return {}
        out = {}
        for si in ds.secinfo:
            var = self.btf.type(si.type)
            if var.kind == Kind.VAR:
                out[var.name] = self.btf.type_name(var.ref)
        return out

    # programs ---------------------------------------------------------------------------
    def _code_sections(self) -> dict[int, CodeSection]:
        code: dict[int, CodeSection] = {}
        for idx, sec in enumerate(self.sections):
            if not (sec.flags & SHF_EXECINSTR) or sec.type != SHT_PROGBITS:
                continue
            data = self.elf.content(sec)
            if len(data) % 8:
                raise BPFLoadError(f"section {sec.name}: size {len(data)} is not whole insns")
            if not data:
                continue
            funcs = sorted(
                (s for s in self.symbols if s.shndx == idx and s.type == STT_FUNC),
                key=lambda s: s.value,
            )
            fns: list[Function] = []
            for i, s in enumerate(funcs):
                if s.value % 8 or s.value >= len(data):
                    raise BPFLoadError(f"function {s.name!r} at bad offset {s.value} in {sec.name}")
                end = (
                    s.value + s.size
                    if s.size
                    else (funcs[i + 1].value if i + 1 < len(funcs) else len(data))
                )
                if end > len(data) or end <= s.value:
                    raise BPFLoadError(f"function {s.name!r} overruns section {sec.name}")
                fns.append(Function(s.name, idx, s.value // 8, (end - s.value) // 8, s.bind))
            if not fns:  # hand-written or very old objects: the section is one program
                fns.append(Function(sec.name, idx, 0, len(data) // 8, STB_GLOBAL))
            code[idx] = CodeSection(
                idx,
                sec.name,
                data,
                fns,
                self.rels.get(idx, {}),
                self.ext.funcs.get(sec.name, []) if self.ext else [],
                self.ext.lines.get(sec.name, []) if self.ext else [],
                self.ext.core_relos.get(sec.name, []) if self.ext else [],
            )
        return code

    def _programs(
        self,
        maps: dict[str, MapSpec],
        map_syms: dict[tuple[int, int], str],
        license: str,
        kern_version: int,
    ) -> dict[str, ProgramSpec]:
        code = self._code_sections()
        data_secs = {i: s.name for i, s in enumerate(self.sections) if s.name in maps}
        programs: dict[str, ProgramSpec] = {}
        for cs in code.values():
            if cs.name == ".text" or cs.name.startswith(".text."):
                continue
            for fn in cs.functions:
                if fn.bind == STB_LOCAL and len(cs.functions) > 1:
                    continue  # a static helper that happens to live in a program section
                spec = _program_spec(fn.name, cs.name, license, kern_version)
                try:
                    link_program(spec, fn, code, map_syms, data_secs, self.btf, self.externs)
                except BPFLoadError as e:
                    # One program that cannot be linked must not take its neighbours down:
                    # it is listed with the reason, and only loading it fails.
                    spec.unloadable_reason = str(e).removeprefix(f"program {fn.name!r}: ")
                    spec.relocs.clear()
                    spec.externs.clear()
                    spec.core_relos.clear()
                programs[fn.name] = spec
        return programs

    def _init_values(self, maps: dict[str, MapSpec], programs: dict[str, ProgramSpec]) -> None:
        """`values = {...}` in BTF map definitions: relocations inside .maps name the entries."""
        sec = self.elf.section(".maps")
        if sec is None or self.btf is None:
            return
        shndx = sec.num
        relocs = self.rels.get(shndx, {})
        self._check_maps_zero(sec, relocs, maps)
        if not relocs:
            return
        starts = sorted(
            (s.value, s.name) for s in self.symbols if s.shndx == shndx and s.name in maps
        )
        for off, target in sorted(relocs.items()):
            owner = None
            for start, name in starts:
                if start <= off:
                    owner = (start, name)
            if owner is None:
                raise BPFLoadError(f".maps: relocation at {off} belongs to no map")
            spec = maps[owner[1]]
            if spec.type not in _INIT_TYPES:
                raise BPFLoadError(
                    f"map {owner[1]!r}: {spec.type.name} takes no initial values "
                    "(only prog arrays and maps of maps do)"
                )
            values_off = self._values_offset(owner[1])
            index = (off - owner[0] - values_off) // 8
            if index < 0 or index >= spec.max_entries:
                raise BPFLoadError(f"map {owner[1]!r}: initial value index {index} out of range")
            if target.name in maps:
                spec.contents.append((index, ("map", target.name)))
            elif target.name in programs:
                spec.contents.append((index, ("prog", target.name)))
            else:
                raise BPFLoadError(f"map {owner[1]!r}: initial value {target.name!r} is unknown")

    def _check_maps_zero(
        self, sec: Section, relocs: dict[int, Symbol], maps: dict[str, MapSpec]
    ) -> None:
        """A BTF map is read from its type alone, so a definition that carries data (an
        initialiser other than `values`) would be silently ignored: refuse it instead."""
        if sec.type == SHT_NOBITS:
            return
        data = self.elf.content(sec)
        slots = {off + i for off in relocs for i in range(8)}
        bad = next((i for i, b in enumerate(data) if b and i not in slots), None)
        if bad is None:
            return
        owner = max(
            ((s.value, s.name) for s in self.symbols if s.shndx == sec.num and s.name in maps),
            key=lambda v: v[0] if v[0] <= bad else -1,
            default=(0, "?"),
        )[1]
        raise BPFLoadError(
            f"map {owner!r}: its definition in .maps holds a non-zero initialiser at byte {bad} "
            "(BTF map definitions take no initialisers except `values` of prog arrays and maps "
            "of maps)"
        )

    def _values_offset(self, map_name: str) -> int:
        assert self.btf is not None
        ds = self.btf.by_name(".maps", Kind.DATASEC)
        assert ds is not None
        for si in ds.secinfo:
            var = self.btf.type(si.type)
            if var.name == map_name:
                st = self.btf.skip_mods(var.ref)
                for m in st.members:
                    if m.name == "values":
                        return m.bit_offset // 8
        raise BPFLoadError(f"map {map_name!r} has initial values but no values member")


def _program_spec(name: str, section: str, license: str, kern_version: int) -> ProgramSpec:
    found = match_section(section)
    spec = ProgramSpec(name, t.ProgType.UNSPEC, b"", section, license, kern_version)
    if found is None:
        spec.unloadable_reason = f"unknown section {section!r}: no libbpf convention matches"
        return spec
    d, target = found
    spec.type = d.prog_type
    spec.expected_attach_type = int(d.attach_type) if d.attach_type is not None else 0
    spec.flags = d.flags
    if d.target == "kernel":
        spec.attach_to = d.btf_prefix + target if target else ""
        if not target:
            spec.unloadable_reason = f"section {section!r} names no kernel function"
    elif d.target == "prog":
        spec.unloadable_reason = "freplace needs the target program (provided at attach)"
    elif d.target == "struct_ops":
        spec.unloadable_reason = _STRUCT_OPS_REASON
    return spec
