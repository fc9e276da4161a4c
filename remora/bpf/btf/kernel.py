"""Lazy lookups in the kernel's own BTF (/sys/kernel/btf/vmlinux).

vmlinux BTF has ~130k types; building Python objects for all of them costs about a second here
(measured: `Spec(open(vmlinux).read())` takes ~1.2 s), which no loader start-up should pay.
We need only a few ids (the attach target of fentry/fexit/tp_btf/lsm programs), so a lookup
finds the name's offset in the string table with one `bytes.find`, then walks the fixed-size
record headers comparing two integers per type, building nothing. Results are cached per
process, and the file is read once, on first use.
"""

from __future__ import annotations

import functools
import struct

from remora.bpf.btf.types import Kind, _extra_len, parse_header
from remora.bpf.errors import BPFLoadError

VMLINUX = "/sys/kernel/btf/vmlinux"


class KernelBTF:
    def __init__(self, path: str = VMLINUX) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                self.raw = f.read()
        except OSError as e:
            raise BPFLoadError(f"kernel BTF {path} unavailable: {e.strerror}") from None
        h = parse_header(self.raw)
        s0 = h.hdr_len + h.str_off
        self.strings = self.raw[s0 : s0 + h.str_len]
        self.t0 = h.hdr_len + h.type_off
        self.t1 = self.t0 + h.type_len
        self._cache: dict[tuple[str, int], int] = {}

    def _name_off(self, name: str) -> int:
        needle = b"\0" + name.encode() + b"\0"
        pos = self.strings.find(needle)
        return -1 if pos < 0 else pos + 1

    def find(self, name: str, kind: Kind) -> int:
        """The type id of `name` with `kind`, or raise BPFLoadError if the kernel lacks it."""
        key = (name, int(kind))
        if key in self._cache:
            return self._cache[key]
        name_off = self._name_off(name)
        if name_off < 0:
            raise BPFLoadError(f"kernel BTF has no {kind.name.lower()} named {name!r}")
        raw = self.raw
        unpack = struct.Struct("<II").unpack_from
        off, tid, end, want = self.t0, 1, self.t1, int(kind)
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
        while off < end:
            n_off, info = unpack(raw, off)
            k = (info >> 24) & 0x1F
            if n_off == name_off and k == want:
                self._cache[key] = tid
                return tid
            step = per_member.get(k)
            off += 12 + (step * (info & 0xFFFF) if step is not None else extra[k])
            tid += 1
        raise BPFLoadError(f"kernel BTF has no {kind.name.lower()} named {name!r}")


@functools.cache
def kernel_btf(path: str = VMLINUX) -> KernelBTF:
    return KernelBTF(path)
