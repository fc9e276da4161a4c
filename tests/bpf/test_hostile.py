"""Handcrafted objects that once amplified memory or reached the kernel truncated (issue 19)."""

from __future__ import annotations

import ctypes
import json
import tracemalloc
from pathlib import Path

import pytest

from remora.bpf.elf import read_elf_bytes
from remora.bpf.errors import BPFError
from remora.bpf.inspect import render_text, summarize
from remora.bpf.maps import Map
from remora.bpf.sys import attr
from remora.bpf.sys import types as t
from tests.bpf.elfbuild import SHT_NOBITS, Sec, Sym, btf_blob, btf_rec, build_elf
from tests.bpf.test_cli import run


def _bss_object(count: int, size: int = 1 << 28) -> bytes:
    secs = [Sec(f".bss.{i}", type=SHT_NOBITS, size=size) for i in range(count)]
    syms = [Sym(f"big{i}", f".bss.{i}", 0, size) for i in range(count)]
    return build_elf(secs, syms)


def test_nobits_sections_are_never_materialised() -> None:
    data = _bss_object(8)
    assert len(data) < 2000
    tracemalloc.start()
    try:
        spec = read_elf_bytes(data, "bss.o")
        text = render_text(summarize(spec))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # 8 sections of 256 MiB each once cost 2 GiB
    assert len(text) < 4000
    assert f"... ({1 << 28} bytes)" in text
    assert spec.variables["big3"].get(4) == bytes(4)
    assert spec.maps[".bss.0"].initial_data is None


def test_inspect_json_does_not_render_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = tmp_path / "bss.o"
    obj.write_bytes(_bss_object(1))

    def refuse(_info: object) -> str:
        raise AssertionError("text rendered under --json")

    monkeypatch.setattr("remora.bpf.inspect.render_text", refuse)
    assert run(["bpf", "inspect", str(obj), "--json"]) == 0
    (var,) = json.loads(capsys.readouterr().out)["variables"]
    assert var["value_truncated"] is True and len(var["value"]) == 128


def test_oversized_nobits_is_refused_by_name() -> None:
    with pytest.raises(BPFError, match=r"'\.bss\.0' claims 1099511627776 bytes"):
        read_elf_bytes(_bss_object(1, 1 << 40), "bss.o")


def _map_with_key_size(nelems: int) -> bytes:
    strings = b"\0int\0type\0key\0value\0max_entries\0m\0.maps\0"
    s = {
        w: strings.index(b"\0" + w.encode() + b"\0") + 1
        for w in ("int", "type", "key", "value", "max_entries", "m", ".maps")
    }
    members = (("type", 3, 0), ("key", 5, 64), ("value", 6, 128), ("max_entries", 8, 192))
    types = (
        btf_rec(s["int"], 1, 4) + (32).to_bytes(4, "little")  # [1] int
        + btf_rec(0, 3, 0) + bytes.fromhex("01000000 01000000 01000000")  # [2] int[1]
        + btf_rec(0, 2, 2)  # [3] int (*)[1]: __uint(type, HASH)
        + btf_rec(0, 3, 0) + (1).to_bytes(4, "little") * 2 + nelems.to_bytes(4, "little")  # [4]
        + btf_rec(0, 2, 4)  # [5] key pointer
        + btf_rec(0, 2, 1)  # [6] value pointer
        + btf_rec(0, 3, 0) + (1).to_bytes(4, "little") * 2 + (16).to_bytes(4, "little")  # [7]
        + btf_rec(0, 2, 7)  # [8] __uint(max_entries, 16)
        + btf_rec(0, 4, 32, 4)  # [9] the map definition struct
        + b"".join(
            (s[n]).to_bytes(4, "little") + tid.to_bytes(4, "little") + off.to_bytes(4, "little")
            for n, tid, off in members
        )
        + btf_rec(s["m"], 14, 9) + (1).to_bytes(4, "little")  # [10] VAR m
        + btf_rec(s[".maps"], 15, 32, 1) + b"".join(x.to_bytes(4, "little") for x in (10, 0, 32))
    )  # fmt: skip
    return build_elf(
        [Sec(".maps", bytes(32)), Sec(".BTF", btf_blob(types, strings), flags=0)],
        [Sym("m", ".maps", 0, 32)],
    )


def test_a_key_size_beyond_32_bits_is_refused_not_truncated() -> None:
    spec = read_elf_bytes(_map_with_key_size(0x40000001), "big.o")
    assert spec.maps["m"].key_size == 0x100000004
    # refused before bpf(2) is called: the attr would otherwise carry a 4-byte key
    with pytest.raises(BPFError, match=r"map 'm': key_size = 4294967300 does not fit .* u32"):
        Map.create(spec.maps["m"])
    assert read_elf_bytes(_map_with_key_size(2), "ok.o").maps["m"].key_size == 8


ATTRS = [
    c
    for c in vars(t).values()
    if isinstance(c, type) and issubclass(c, attr.Attr) and c is not attr.Attr
]


@pytest.mark.parametrize("cls", ATTRS, ids=lambda c: c.__name__)
def test_every_attr_field_refuses_values_it_cannot_hold(cls: type[ctypes.Structure]) -> None:
    for name, ctype, *_ in cls._fields_:
        if not issubclass(ctype, ctypes._SimpleCData):
            continue
        bits = 8 * ctypes.sizeof(ctype)
        obj = cls(**{name: (1 << bits) - 1})
        for bad in (1 << bits, -1):
            with pytest.raises(BPFError, match=name):
                cls(**{name: bad})
            with pytest.raises(BPFError, match=name):
                setattr(obj, name, bad)
    assert len(ATTRS) >= 8
