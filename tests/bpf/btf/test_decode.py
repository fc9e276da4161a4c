"""Bytes decoded through BTF into plain values, as `remora bpf trace` prints them."""

from __future__ import annotations

import struct
from pathlib import Path

from remora.bpf.btf.decode import decode
from remora.bpf.btf.types import Kind
from remora.bpf.elf import read_elf


def _type(obj: Path, name: str) -> tuple[object, int]:
    btf = read_elf(obj).btf
    assert btf is not None
    t = btf.by_name(name, Kind.STRUCT)
    assert t is not None
    return btf, t.id


def test_structs_nest_and_unions_show_every_member(bpf_objs: dict[str, Path]) -> None:
    btf, tid = _type(bpf_objs["layout"], "nested")
    data = bytearray(56)
    data[0] = 9
    struct.pack_into("<QIHBB", data, 8, 1, 2, 3, 4, 5)
    struct.pack_into("<3H", data, 24, 7, 8, 9)
    struct.pack_into("<I", data, 32, 0x0100007F)
    data[48] = 0xFF
    value = decode(btf, tid, bytes(data))  # type: ignore[arg-type]
    assert value == {
        "kind": 9,
        "inner": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5},
        "list": [7, 8, 9],
        "addr": {"v4": 0x0100007F, "v6": [0x7F, 0, 0, 1] + [0] * 12},
        "last": 255,
    }


def test_bitfields_and_signed_chars(bpf_objs: dict[str, Path]) -> None:
    btf, tid = _type(bpf_objs["layout"], "bits")
    # C packs `c` into the byte after the two bitfields (ctypes would not): offsets from BTF
    data = struct.pack("<BB6xQ", 5 | 17 << 3, 200, 1 << 40)
    value = decode(btf, tid, data)  # type: ignore[arg-type]
    assert value == {"a": 5, "b": 17, "c": 200, "d": 1 << 40}
    btf, tid = _type(bpf_objs["layout"], "holes")
    data = struct.pack("<b7xQb3xIH6x", -3, 12, 65, 99, 443)
    assert decode(btf, tid, data) == {  # type: ignore[arg-type]
        "tag": -3,
        "count": 12,
        "flag": 65,
        "id": 99,
        "port": 443,
    }


def test_char_arrays_read_as_text(bpf_objs: dict[str, Path]) -> None:
    btf, tid = _type(bpf_objs["trace"], "event")
    data = struct.pack("<II16sQ", 1, 2, b"sshd\0garbage", 3)
    assert decode(btf, tid, data)["comm"] == "sshd"  # type: ignore[arg-type,index]
