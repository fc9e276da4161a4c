"""Parse a raw BTF blob (the `.BTF` ELF section or /sys/kernel/btf/*) into types and strings.

The format is `include/uapi/linux/btf.h`: a header, a type section of variable-length records
(a 12-byte `struct btf_type` followed by kind-specific data) and a NUL-separated string section.
Type ids start at 1 (0 is void). Every read is bounds-checked and every failure is a
`BPFLoadError` naming the type and byte offset, because these blobs arrive from files we do not
control. We also remember where each record sits so the loader can patch DATASEC sizes and
variable offsets in place (clang leaves them for the loader to fill).
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Callable

from remora.bpf.errors import BPFLoadError

BTF_MAGIC = 0xEB9F
_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_U32 = struct.Struct("<I")
_MAX_DEPTH = 64


class Kind(enum.IntEnum):
    """`BTF_KIND_*`."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


_MODIFIERS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
# Kinds whose third header word is a size; for the others it is a type id.
_SIZED = frozenset(
    {Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC, Kind.FLOAT}
)


@dataclasses.dataclass(slots=True)
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0


@dataclasses.dataclass(slots=True)
class SecInfo:
    type: int
    offset: int
    size: int


@dataclasses.dataclass(slots=True)
class Type:
    """One BTF type. Kind-specific data lives in the optional fields."""

    id: int
    kind: Kind
    name: str
    size: int = 0  # INT, STRUCT, UNION, ENUM*, DATASEC, FLOAT
    ref: int = 0  # PTR, TYPEDEF, modifiers, FUNC, VAR, DECL_TAG: referenced type id
    vlen: int = 0
    kind_flag: bool = False
    members: list[Member] = dataclasses.field(default_factory=list)
    elem: int = 0  # ARRAY
    index: int = 0
    nelems: int = 0
    secinfo: list[SecInfo] = dataclasses.field(default_factory=list)  # DATASEC
    linkage: int = 0  # VAR, FUNC (FUNC keeps it in vlen)
    enum_values: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    params: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # FUNC_PROTO
    int_bits: int = 0
    int_offset: int = 0  # INT: BTF_INT_OFFSET, non-zero only in pre-bitfield-era encodings
    int_encoding: int = 0  # INT: BTF_INT_SIGNED (1), _CHAR (2), _BOOL (4)
    record_off: int = 0  # byte offset of the record inside the type section


@dataclasses.dataclass
class Header:
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int


class Strings:
    """The BTF string table; offsets index into it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self, off: int) -> str:
        if off == 0:
            return ""
        if off < 0 or off >= len(self.data):
            raise BPFLoadError(
                f"BTF: string offset {off} outside string section of {len(self.data)}"
            )
        end = self.data.find(b"\0", off)
        if end < 0:
            raise BPFLoadError(f"BTF: string at offset {off} is not NUL-terminated")
        return self.data[off:end].decode("utf-8", errors="replace")


def parse_header(raw: bytes) -> Header:
    if len(raw) < _HDR.size:
        raise BPFLoadError(f"BTF: {len(raw)} bytes is too short for a header")
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(raw)
    if magic != BTF_MAGIC:
        raise BPFLoadError(f"BTF: bad magic {magic:#x} (big-endian BTF is not supported)")
    if version != 1:
        raise BPFLoadError(f"BTF: unsupported version {version}")
    if hdr_len < _HDR.size or hdr_len > len(raw):
        raise BPFLoadError(f"BTF: bad header length {hdr_len}")
    body = len(raw) - hdr_len
    if type_off + type_len > body or str_off + str_len > body:
        raise BPFLoadError(
            f"BTF: sections (types {type_off}+{type_len}, strings {str_off}+{str_len}) "
            f"exceed the {body} bytes after the header"
        )
    if type_len % 4:
        raise BPFLoadError(f"BTF: type section length {type_len} is not a multiple of 4")
    return Header(version, flags, hdr_len, type_off, type_len, str_off, str_len)


class Spec:
    """A parsed BTF blob: `types[id]`, names, sizes and the raw bytes for the kernel."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.header = parse_header(raw)
        h = self.header
        s0 = h.hdr_len + h.str_off
        self.strings = Strings(raw[s0 : s0 + h.str_len])
        t0 = h.hdr_len + h.type_off
        self.types: list[Type] = [Type(0, Kind.UNKN, "void")]
        self._parse(raw[t0 : t0 + h.type_len])
        self._by_name: dict[str, list[Type]] | None = None

    # parsing ------------------------------------------------------------------------------
    def _parse(self, data: bytes) -> None:
        off = 0
        n = len(data)
        get = self.strings.get
        while off < n:
            t, off = read_type(data, off, len(self.types), get)
            self.types.append(t)
        count = len(self.types)
        for t in self.types:
            members = (m.type for m in t.members)
            listed = (*members, *(s.type for s in t.secinfo), *(p for _, p in t.params))
            for ref in (t.ref, t.elem, t.index, *listed):
                if ref >= count:
                    raise BPFLoadError(
                        f"BTF: type {t.id} ({t.kind.name} {t.name!r}) refers to missing type {ref}"
                    )
        from remora.bpf.btf.cycles import check_acyclic  # cycles walks these Types: import late

        check_acyclic(self.types)

    # queries --------------------------------------------------------------------------------
    def type(self, tid: int) -> Type:
        if tid < 0 or tid >= len(self.types):
            raise BPFLoadError(f"BTF: no type with id {tid}")
        return self.types[tid]

    def by_name(self, name: str, kind: Kind | None = None) -> Type | None:
        if self._by_name is None:
            self._by_name = {}
            for t in self.types:
                if t.name:
                    self._by_name.setdefault(t.name, []).append(t)
        for t in self._by_name.get(name, ()):
            if kind is None or t.kind == kind:
                return t
        return None

    def skip_mods(self, tid: int) -> Type:
        """Follow typedefs and qualifiers to the underlying type."""
        t = self.type(tid)
        for _ in range(_MAX_DEPTH):
            if t.kind not in _MODIFIERS:
                return t
            t = self.type(t.ref)
        raise BPFLoadError(f"BTF: type {tid}: more than {_MAX_DEPTH} modifiers in a row")

    def sizeof(self, tid: int) -> int:
        return type_size(self.type, tid)

    def type_name(self, tid: int) -> str:
        """A C-ish spelling of a type, for inspect output and error messages.

        Iterative and bounded: pointer and array chains are spelled as suffixes on the innermost
        named type, and a chain deeper than the kernel would resolve is cut short with "...".
        """
        t = self.type(tid)
        suffixes: list[str] = []
        for _ in range(_MAX_DEPTH):
            if t.kind == Kind.UNKN:
                base = "void"
            elif t.kind in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64):
                kw = {Kind.STRUCT: "struct", Kind.UNION: "union"}.get(t.kind, "enum")
                base = f"{kw} {t.name or '(anon)'}"
            elif t.kind == Kind.PTR:
                suffixes.append(" *")
                t = self.type(t.ref)
                continue
            elif t.kind == Kind.ARRAY:
                suffixes.append(f"[{t.nelems}]")
                t = self.type(t.elem)
                continue
            elif t.name or t.kind in (Kind.FUNC_PROTO, Kind.FWD):
                base = t.name or "(function)"
            else:
                t = self.type(t.ref)
                continue
            break
        else:
            base = "..."
        return base + "".join(reversed(suffixes))

    def iter_kind(self, kind: Kind) -> list[Type]:
        return [t for t in self.types if t.kind == kind]


def read_type(data: bytes, off: int, tid: int, get: Callable[[int], str]) -> tuple[Type, int]:
    """Decode the record at `off`; returns it and the next record's offset. Shared by the full
    parse and by lazy readers that decode only the records they reach (`kernel.KernelBTF`)."""
    n = len(data)
    if off + 12 > n:
        raise BPFLoadError(f"BTF: type {tid} at offset {off}: truncated header")
    name_off, info, size_type = _TYPE.unpack_from(data, off)
    vlen = info & 0xFFFF
    kind_no = (info >> 24) & 0x1F
    try:
        kind = Kind(kind_no)
    except ValueError:
        raise BPFLoadError(f"BTF: type {tid} at offset {off}: unknown kind {kind_no}") from None
    t = Type(tid, kind, get(name_off), vlen=vlen, kind_flag=bool(info >> 31))
    t.record_off = off
    rec = off
    off += 12
    need = _extra_len(kind, vlen)
    if off + need > n:
        raise BPFLoadError(
            f"BTF: type {tid} ({kind.name} {t.name!r}) at offset {rec}: "
            f"needs {need} more bytes, {n - off} left"
        )
    if kind in _SIZED:
        t.size = size_type
    else:
        t.ref = size_type
    if kind == Kind.INT:
        (enc,) = _U32.unpack_from(data, off)
        t.int_bits = enc & 0xFF
        t.int_offset = (enc >> 16) & 0xFF
        t.int_encoding = (enc >> 24) & 0xF
    elif kind == Kind.ARRAY:
        t.elem, t.index, t.nelems = struct.unpack_from("<III", data, off)
    elif kind in (Kind.STRUCT, Kind.UNION):
        for i in range(vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", data, off + 12 * i)
            if t.kind_flag:
                t.members.append(Member(get(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
            else:
                t.members.append(Member(get(m_name), m_type, m_off))
    elif kind == Kind.ENUM:
        for i in range(vlen):
            e_name, e_val = struct.unpack_from("<Ii", data, off + 8 * i)
            t.enum_values.append((get(e_name), e_val))
    elif kind == Kind.ENUM64:
        for i in range(vlen):
            e_name, lo, hi = struct.unpack_from("<III", data, off + 12 * i)
            t.enum_values.append((get(e_name), lo | (hi << 32)))
    elif kind == Kind.FUNC_PROTO:
        for i in range(vlen):
            p_name, p_type = struct.unpack_from("<II", data, off + 8 * i)
            t.params.append((get(p_name), p_type))
    elif kind == Kind.VAR:
        (t.linkage,) = _U32.unpack_from(data, off)
    elif kind == Kind.DATASEC:
        for i in range(vlen):
            t.secinfo.append(SecInfo(*struct.unpack_from("<III", data, off + 12 * i)))
    elif kind == Kind.FUNC:
        t.linkage = vlen
    return t, off + need


def type_size(lookup: Callable[[int], Type], tid: int) -> int:
    """A type's byte size, through arrays, modifiers and variables; for the object's own `Spec`
    and for the lazy kernel reader alike (`lookup` decodes one type by id)."""
    t = lookup(tid)
    mult = 1
    for _ in range(_MAX_DEPTH):
        if t.kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            return mult * t.size
        if t.kind == Kind.DATASEC:
            return mult * t.size
        if t.kind == Kind.PTR:
            return mult * 8
        if t.kind == Kind.ARRAY:
            mult *= t.nelems
            t = lookup(t.elem)
        elif t.kind in _MODIFIERS or t.kind == Kind.VAR:
            t = lookup(t.ref)
        else:
            raise BPFLoadError(f"BTF: type {tid} ({t.kind.name}) has no size")
    raise BPFLoadError(f"BTF: type {tid}: nested more than {_MAX_DEPTH} deep")


def _extra_len(kind: Kind, vlen: int) -> int:
    if kind in (Kind.INT, Kind.VAR, Kind.DECL_TAG):
        return 4
    if kind == Kind.ARRAY:
        return 12
    if kind in (Kind.STRUCT, Kind.UNION, Kind.DATASEC, Kind.ENUM64):
        return 12 * vlen
    if kind in (Kind.ENUM, Kind.FUNC_PROTO):
        return 8 * vlen
    return 0
