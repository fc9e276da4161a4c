"""The ctypes-against-BTF check must reach every field, including nested ones, by name,
offset and size, before any byte is read through the Python type."""

from __future__ import annotations

import ctypes
import subprocess

import pytest

from remora.bpf.btf.check import check_ctype
from remora.bpf.elf import read_elf
from remora.bpf.errors import BPFTypeMismatchError
from tests.bpf.conftest import CLANG_FLAGS

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct port { __u16 lo; __u16 hi; };
struct key { __u32 addr; struct port ports[2]; union { __u32 mark; __u32 tag; }; };
struct val { __u32 a; __u32 b; };
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4);
    __type(key, struct key);
    __type(value, struct val);
} m SEC(".maps");
struct pk { __u8 a; __u32 b; __u8 c[3]; } __attribute__((packed));
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pk);
} packed SEC(".maps");
SEC("xdp") int p(void *ctx) { return bpf_map_lookup_elem(&m, &(struct key){}) ? 1 : 2; }
char LICENSE[] SEC("license") = "GPL";
"""


class Port(ctypes.Structure):
    _fields_ = [("lo", ctypes.c_uint16), ("hi", ctypes.c_uint16)]


class MarkOrTag(ctypes.Union):
    _fields_ = [("mark", ctypes.c_uint32), ("tag", ctypes.c_uint32)]


class Key(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("addr", ctypes.c_uint32), ("ports", Port * 2), ("u", MarkOrTag)]


@pytest.fixture(scope="module")
def btf_types(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, object]:
    d = tmp_path_factory.mktemp("check")
    (d / "k.bpf.c").write_text(SRC)
    obj = d / "k.o"
    subprocess.run(["clang", *CLANG_FLAGS, "-c", str(d / "k.bpf.c"), "-o", str(obj)], check=True)
    maps = read_elf(obj).maps
    return maps["m"].key_type, maps["m"].value_type, maps["packed"].value_type


def test_matching_nested_types_pass(btf_types: tuple[object, object, object]) -> None:
    check_ctype(Key, btf_types[0], "key")


def test_nested_field_name_is_checked(btf_types: tuple[object, object, object]) -> None:
    class BadPort(ctypes.Structure):
        _fields_ = [("low", ctypes.c_uint16), ("hi", ctypes.c_uint16)]

    class K(ctypes.Structure):
        _anonymous_ = ("u",)
        _fields_ = [("addr", ctypes.c_uint32), ("ports", BadPort * 2), ("u", MarkOrTag)]

    with pytest.raises(BPFTypeMismatchError, match=r"field 'ports\[\]\.low'.*'lo'"):
        check_ctype(K, btf_types[0], "key")


def test_nested_union_member_is_checked(btf_types: tuple[object, object, object]) -> None:
    class U(ctypes.Union):
        _fields_ = [("mark", ctypes.c_uint32), ("label", ctypes.c_uint32)]

    class K(ctypes.Structure):
        _anonymous_ = ("u",)
        _fields_ = [("addr", ctypes.c_uint32), ("ports", Port * 2), ("u", U)]

    with pytest.raises(BPFTypeMismatchError, match=r"field 'u\.label'"):
        check_ctype(K, btf_types[0], "key")


def test_member_size_is_checked(btf_types: tuple[object, object, object]) -> None:
    class Narrow(ctypes.Structure):  # 8 bytes, same names and offsets, but b is a u16
        _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint16)]

    assert ctypes.sizeof(Narrow) == 8
    with pytest.raises(BPFTypeMismatchError, match=r"field 'b' of Narrow is 2 bytes.* 4"):
        check_ctype(Narrow, btf_types[1], "value")


def test_member_offset_is_checked(btf_types: tuple[object, object, object]) -> None:
    class Natural(ctypes.Structure):  # 8 bytes like the packed BTF struct, but b sits at 4
        _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint32), ("c", ctypes.c_uint8 * 0)]

    class Packed(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint32), ("c", ctypes.c_uint8 * 3)]

    assert ctypes.sizeof(Natural) == 8
    with pytest.raises(BPFTypeMismatchError, match=r"field 'b' of Natural is at offset 4.* at 1"):
        check_ctype(Natural, btf_types[2], "value")
    check_ctype(Packed, btf_types[2], "value")
