"""Lazy lookups in the kernel's own BTF (/sys/kernel/btf/vmlinux), or in a BTF file that stands
in for it.

vmlinux BTF has ~130k types; building Python objects for all of them costs 1-2 s here
(measured: `Spec(open(vmlinux).read())` takes ~1.2 s), which no loader start-up should pay.
A loader needs a handful of types: the attach target of fentry/fexit/tp_btf/lsm programs, and
for CO-RE the candidates named like a local type plus whatever those reach. So one pass over
the fixed-size record headers records where each type starts, building nothing else; a name
is found in the string table with one `bytes.find`, and the types that carry it by searching
the type section for that string offset. Only the records a caller asks for are decoded, and
each once. Results are cached per process, and the file is read once, on first use.

Names are looked up as whole strings (`\\0name\\0`): libbpf and pahole write each distinct
string once and never point a name into the middle of another string.
"""

from __future__ import annotations

import bisect
import functools
import struct
from array import array

from remora.bpf.btf.types import Kind, Strings, Type, _extra_len, parse_header, read_type
from remora.bpf.errors import BPFLoadError

VMLINUX = "/sys/kernel/btf/vmlinux"
_ELF_MAGIC = b"\x7fELF"


class KernelBTF:
    def __init__(self, path: str = VMLINUX) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise BPFLoadError(f"kernel BTF {path} unavailable: {e.strerror}") from None
        if raw.startswith(_ELF_MAGIC):
            raw = _btf_section(raw, path)
        self.raw = raw
        h = parse_header(raw)
        s0 = h.hdr_len + h.str_off
        self.strings = raw[s0 : s0 + h.str_len]
        self._strs = Strings(self.strings)
        self.t0 = h.hdr_len + h.type_off
        self.t1 = self.t0 + h.type_len
        self._types_data = raw[self.t0 : self.t1]
        self._cache: dict[tuple[str, int], int] = {}
        self._offsets: array[int] | None = None  # record offset of type id i + 1
        self._types: dict[int, Type] = {0: Type(0, Kind.UNKN, "void")}

    def _name_off(self, name: str) -> int:
        needle = b"\0" + name.encode() + b"\0"
        pos = self.strings.find(needle)
        return -1 if pos < 0 else pos + 1

    def _index(self) -> array[int]:
        """One walk over the record headers, comparing nothing: where each type starts."""
        if self._offsets is not None:
            return self._offsets
        data = self._types_data
        unpack = struct.Struct("<I").unpack_from
        extra = [_extra_len(Kind(k), 1) if k in Kind._value2member_map_ else 0 for k in range(32)]
        per_member = {
            int(k): _extra_len(k, 1)
            for k in (
                Kind.STRUCT,
                Kind.UNION,
                Kind.DATASEC,
                Kind.ENUM64,
                Kind.ENUM,
                Kind.FUNC_PROTO,
            )
        }
        offsets = array("I")
        append = offsets.append
        off, end = 0, len(data)
        while off + 12 <= end:
            append(off)
            (info,) = unpack(data, off + 4)
            k = (info >> 24) & 0x1F
            step = per_member.get(k)
            off += 12 + (step * (info & 0xFFFF) if step is not None else extra[k])
        self._offsets = offsets
        return offsets

    def _ids_with_name_off(self, name_off: int) -> list[int]:
        """Type ids whose record names `name_off`, ascending: the 4-byte value is searched for
        in the type section, and a hit counts only where a record starts."""
        offsets = self._index()
        data = self._types_data
        needle = struct.pack("<I", name_off)
        out: list[int] = []
        pos = data.find(needle)
        while pos >= 0:
            i = bisect.bisect_left(offsets, pos)
            if i < len(offsets) and offsets[i] == pos:
                out.append(i + 1)
            pos = data.find(needle, pos + 1)
        return out

    def find(self, name: str, kind: Kind) -> int:
        """The type id of `name` with `kind`, or raise BPFLoadError if the kernel lacks it."""
        key = (name, int(kind))
        if key in self._cache:
            return self._cache[key]
        name_off = self._name_off(name)
        if name_off >= 0:
            for tid in self._ids_with_name_off(name_off):
                (info,) = struct.unpack_from("<I", self._types_data, self._offset(tid) + 4)
                if (info >> 24) & 0x1F == kind:
                    self._cache[key] = tid
                    return tid
        raise BPFLoadError(f"kernel BTF has no {kind.name.lower()} named {name!r}")

    def _offset(self, tid: int) -> int:
        offsets = self._index()
        if not 0 < tid <= len(offsets):
            raise BPFLoadError(f"{self.path}: no type with id {tid}")
        return offsets[tid - 1]

    # the `core.Types` protocol: decode on demand ----------------------------------------------
    def type(self, tid: int) -> Type:
        t = self._types.get(tid)
        if t is None:
            t, _ = read_type(self._types_data, self._offset(tid), tid, self._strs.get)
            self._types[tid] = t
        return t

    def named_like(self, essential: str) -> list[int]:
        """Ids of the types named `essential` or `essential___<anything>`, ascending: the
        candidates among which CO-RE's flavour rule picks."""
        if not essential:
            return []
        exact = b"\0" + essential.encode()
        strings = self.strings
        offs: list[int] = []
        for tail in (b"\0", b"___"):
            needle = exact + tail
            pos = strings.find(needle)
            while pos >= 0:
                offs.append(pos + 1)
                pos = strings.find(needle, pos + 1)
        ids: list[int] = []
        for off in offs:
            ids += self._ids_with_name_off(off)
        return sorted(set(ids))

    @property
    def decoded(self) -> int:
        """How many records have been decoded: the measure that lazy loading stays lazy."""
        return len(self._types) - 1


def _btf_section(raw: bytes, path: str) -> bytes:
    """The .BTF section of an ELF file of any machine (a vmlinux image, or a BPF object);
    `elffile` reads only BPF objects, so this reads just the section headers, bounds-checked."""
    where = f"{path}: ELF file"
    try:
        if raw[4] != 2 or raw[5] != 1:
            raise BPFLoadError(f"{where} is not 64-bit little-endian")
        shoff, shentsize, shnum, shstrndx = (
            *struct.unpack_from("<Q", raw, 0x28),
            *struct.unpack_from("<HHH", raw, 0x3A),
        )
        if shentsize < 64 or shstrndx >= shnum:
            raise BPFLoadError(f"{where} has malformed section headers")
        heads = [struct.unpack_from("<IIQQQQ", raw, shoff + i * shentsize) for i in range(shnum)]
        names_off, names_size = heads[shstrndx][4], heads[shstrndx][5]
        names = raw[names_off : names_off + names_size]
        for name, _type, _flags, _addr, off, size in heads:
            if names[name : name + 5] == b".BTF\0" and off + size <= len(raw):
                return raw[off : off + size]
    except (IndexError, struct.error):
        raise BPFLoadError(f"{where} is truncated") from None
    raise BPFLoadError(f"{where} has no .BTF section")


@functools.cache
def kernel_btf(path: str = VMLINUX) -> KernelBTF:
    """The process-wide reader for `path` (vmlinux unless a stand-in file is named)."""
    return KernelBTF(path)
