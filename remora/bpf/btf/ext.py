"""Parse `.BTF.ext`: per-section func_info and line_info records (`include/uapi/linux/btf.h`
has no struct for the container; its layout is libbpf's `struct btf_ext_header`, a format fact).

In the ELF file every record's insn_off is a *byte* offset inside its section; the kernel wants
instruction indexes relative to the program, so records are kept per section here and rebased
by the linker once it knows where each function landed. CO-RE records (`struct bpf_core_relo`
in `include/uapi/linux/bpf.h`) are kept whole for the same reason: the loader, not the kernel,
applies them, to whichever copies of a function the linker made.
"""

from __future__ import annotations

import dataclasses
import struct

from remora.bpf.btf.types import BTF_MAGIC, Strings
from remora.bpf.errors import BPFLoadError

_EXT_HDR = struct.Struct("<HBBIIIII")


@dataclasses.dataclass(slots=True)
class FuncRec:
    insn_off: int  # bytes within the section
    type_id: int


@dataclasses.dataclass(slots=True)
class LineRec:
    insn_off: int  # bytes within the section
    file_name_off: int
    line_off: int
    line_col: int


@dataclasses.dataclass(frozen=True, slots=True)
class CoreRelo:
    """One `struct bpf_core_relo`: `access_str_off` indexes the object's BTF strings."""

    insn_off: int  # bytes within the section
    type_id: int
    access_str_off: int
    kind: int  # enum bpf_core_relo_kind


@dataclasses.dataclass
class Ext:
    funcs: dict[str, list[FuncRec]]
    lines: dict[str, list[LineRec]]
    core_relos: dict[str, list[CoreRelo]]


def parse_ext(raw: bytes, strings: Strings) -> Ext:
    if len(raw) < _EXT_HDR.size:
        raise BPFLoadError(f"BTF.ext: {len(raw)} bytes is too short for a header")
    magic, version, _flags, hdr_len, fi_off, fi_len, li_off, li_len = _EXT_HDR.unpack_from(raw)
    if magic != BTF_MAGIC or version != 1:
        raise BPFLoadError(f"BTF.ext: bad magic {magic:#x} or version {version}")
    if hdr_len < _EXT_HDR.size or hdr_len > len(raw):
        raise BPFLoadError(f"BTF.ext: bad header length {hdr_len}")
    body = raw[hdr_len:]
    funcs = _parse_info(body, fi_off, fi_len, 8, "func_info", strings)
    lines = _parse_info(body, li_off, li_len, 16, "line_info", strings)
    core: dict[str, list[bytes]] = {}
    if hdr_len >= _EXT_HDR.size + 8:
        cr_off, cr_len = struct.unpack_from("<II", raw, _EXT_HDR.size)
        core = _parse_info(body, cr_off, cr_len, 16, "core_relo", strings)
    return Ext(
        {
            sec: [FuncRec(*struct.unpack_from("<II", r)) for r in recs]
            for sec, recs in funcs.items()
        },
        {
            sec: [LineRec(*struct.unpack_from("<IIII", r)) for r in recs]
            for sec, recs in lines.items()
        },
        {
            sec: [CoreRelo(*struct.unpack_from("<IIII", r)) for r in recs]
            for sec, recs in core.items()
        },
    )


def _parse_info(
    body: bytes, off: int, length: int, min_rec: int, what: str, strings: Strings
) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    if length == 0:
        return out
    if off + length > len(body) or length < 4:
        raise BPFLoadError(f"BTF.ext: {what} ({off}+{length}) exceeds the section")
    data = body[off : off + length]
    (rec_size,) = struct.unpack_from("<I", data)
    if rec_size < min_rec or rec_size > 1024:
        raise BPFLoadError(f"BTF.ext: {what} record size {rec_size} is invalid")
    pos = 4
    while pos < len(data):
        if pos + 8 > len(data):
            raise BPFLoadError(f"BTF.ext: {what} truncated at offset {pos}")
        sec_off, count = struct.unpack_from("<II", data, pos)
        pos += 8
        if count * rec_size > len(data) - pos:
            raise BPFLoadError(f"BTF.ext: {what} claims {count} records, data ends at {pos}")
        sec = strings.get(sec_off)
        out.setdefault(sec, []).extend(
            data[pos + i * rec_size : pos + i * rec_size + min_rec] for i in range(count)
        )
        pos += count * rec_size
    return out
