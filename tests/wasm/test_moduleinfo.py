from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from remora.wasm.errors import GuestTrap, LinkError, ModuleFormatError
from remora.wasm.limits import Limits
from remora.wasm.moduleinfo import custom_sections, inspect_module
from remora.wasm.runner import WasmHost


def custom(name: bytes, payload: bytes) -> bytes:
    body = bytes([len(name)]) + name + payload
    return b"\0" + bytes([len(body)]) + body


def test_custom_section_walk() -> None:
    data = b"\0asm\x01\0\0\0" + custom(b"hello", b"xyz") + custom(b"producers", b"")
    sections = custom_sections(data)
    assert [(s.name, s.offset, s.size) for s in sections] == [
        ("hello", 10, 9),
        ("producers", 21, 10),
    ]


def test_inspect_lists_imports_exports_memories_and_names(guest: Callable[[str], bytes]) -> None:
    info = inspect_module(guest("compute"))
    assert [(i.module, i.name, i.kind, i.signature) for i in info.imports] == [
        ("host", "add", "func", "(i32, i32) -> (i32)")
    ]
    exports = {e.name: (e.kind, e.signature) for e in info.exports}
    assert exports["mix"] == ("func", "(i64, f32, f64) -> (f64)")
    assert exports["table"] == ("table", "funcref min=1 max=None")
    assert [m.name for m in info.memories] == ["memory"]
    assert [c.name for c in info.custom_sections] == ["name"]  # from wat2wasm --debug-names


def test_inspect_c_guest_sections(guest: Callable[[str], bytes]) -> None:
    info = inspect_module(guest("hello"))
    assert {"wasi_snapshot_preview1"} == {i.module for i in info.imports}
    assert "producers" in {c.name for c in info.custom_sections}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "bad magic"),
        (b"\x7fELF\x02\x01\x01\0", "bad magic"),
        (b"\0asm\x0d\0\x01\0", "unsupported binary version 0d000100"),
        (b"\0asm\x01\0\0\0\x01", "section 1 size: unexpected end of file"),
        (b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x7f", "LEB128 value exceeds u32"),
        (b"\0asm\x01\0\0\0\x01\x80\x80\x80\x80\x80\x01", "LEB128 longer than 5 bytes"),
        (b"\0asm\x01\0\0\0\x0a\x10abc", "section 10 claims 16 bytes, only 3 remain"),
        (b"\0asm\x01\0\0\0\0\x02\x05a", "custom section name overruns section"),
        (b"\0asm\x01\0\0\0\0\x02\x01\xff", "not UTF-8"),
    ],
)
def test_malformed_binaries_name_the_offset(data: bytes, message: str) -> None:
    with pytest.raises(ModuleFormatError, match=message):
        inspect_module(data, "bad.wasm")


def mutations(seed_module: bytes, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        data = bytearray(seed_module)
        match i % 4:
            case 0:
                del data[rng.randrange(len(data)) :]
            case 1:
                for _ in range(rng.randint(1, 4)):
                    data[rng.randrange(8, len(data))] = rng.randrange(256)
            case 2:
                pos = rng.randrange(8, len(data))
                data[pos:pos] = rng.randbytes(rng.randint(1, 16))
            case _:
                data = bytearray(b"\0asm\x01\0\0\0" + rng.randbytes(rng.randint(0, 64)))
        out.append(bytes(data))
    return out


def test_fuzzed_bytes_never_escape_as_untyped_errors(guest: Callable[[str], bytes]) -> None:
    outcomes = {"ok": 0, "format": 0}
    for data in mutations(guest("compute"), 300, seed=1234):
        try:
            inspect_module(data)
            outcomes["ok"] += 1
        except ModuleFormatError:
            outcomes["format"] += 1
    assert outcomes["format"] > 150
    assert outcomes["ok"] > 0  # some byte flips land in data that stays valid


def test_fuzzed_modules_run_or_fail_typed(guest: Callable[[str], bytes]) -> None:
    host = WasmHost()
    limits = Limits(fuel=100_000, timeout=1, max_memory=1 << 20)
    outcomes = {"ran": 0, "typed": 0}
    for data in mutations(guest("grow_bomb"), 120, seed=99):
        try:
            with host.instantiate(data, limits=limits) as g:
                g.call("grow_until_refused")
            outcomes["ran"] += 1
        except (ModuleFormatError, LinkError, GuestTrap):
            outcomes["typed"] += 1
    # Both branches must be exercised, or this proves nothing about running mutated modules.
    assert outcomes["ran"] > 0 and outcomes["typed"] > 0, outcomes
