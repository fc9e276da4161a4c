"""Random small modules, written straight to the binary format, for the fuzzer.

Written as bytes rather than WAT so the generator can reach encodings a text printer would
normalise away, and so a seed reproduces one exact module. Most generated modules are valid:
value types of every kind (numeric, v128, and nullable references, which have a default to
return), tables and memories whose limits straddle the caps the fuzzer runs under, and a
`_start` that grows tables and memories in a loop. Some choices are deliberately out of range
(minimums above the caps, 64-bit and shared memories) so that instantiation failures are
exercised too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Value types with a constant default, so any function can return them: (encoding, default).
NUMERIC = {
    "i32": (b"\x7f", b"\x41\x00"),
    "i64": (b"\x7e", b"\x42\x00"),
    "f32": (b"\x7d", b"\x43" + bytes(4)),
    "f64": (b"\x7c", b"\x44" + bytes(8)),
    "v128": (b"\x7b", b"\xfd\x0c" + bytes(16)),
}
# Nullable references by heap-type byte; their default is `ref.null ht`.
HEAPS = {
    "funcref": 0x70, "externref": 0x6F, "anyref": 0x6E, "eqref": 0x6D, "i31ref": 0x6C,
    "structref": 0x6B, "arrayref": 0x6A, "exnref": 0x69, "nullref": 0x71,
    "nullexternref": 0x72, "nullfuncref": 0x73, "nullexnref": 0x74,
}  # fmt: skip
VALTYPES = [*NUMERIC, *HEAPS]


def uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(text: str) -> bytes:
    raw = text.encode()
    return uleb(len(raw)) + raw


def section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + uleb(len(payload)) + payload


def encode(valtype: str) -> bytes:
    return NUMERIC[valtype][0] if valtype in NUMERIC else bytes([HEAPS[valtype]])


def default(valtype: str) -> bytes:
    return NUMERIC[valtype][1] if valtype in NUMERIC else bytes([0xD0, HEAPS[valtype]])


def limits(rng: random.Random, low: int, high: int, flags: int = 0) -> bytes:
    minimum = rng.randint(low, high)
    if rng.random() < 0.5 or flags & 0x02:  # shared needs a maximum
        return bytes([flags | 0x01]) + uleb(minimum) + uleb(minimum + rng.randint(0, high))
    return bytes([flags]) + uleb(minimum)


@dataclass
class Generated:
    data: bytes
    summary: list[str] = field(default_factory=list)


def module(rng: random.Random) -> Generated:
    """One random module; `summary` says what it holds, for failure messages."""
    summary: list[str] = []
    sigs: list[tuple[list[str], list[str]]] = [([], [])]  # type 0 is _start's () -> ()
    for _ in range(rng.randint(1, 4)):
        params = rng.choices(VALTYPES, k=rng.randint(0, 4))
        results = rng.choices(VALTYPES, k=rng.randint(0, 3))
        sigs.append((params, results))
    summary.append(f"types {sigs}")
    types = vec([b"\x60" + vec([encode(p) for p in ps]) + vec([encode(r) for r in rs])
                 for ps, rs in sigs])  # fmt: skip

    imports: list[bytes] = []
    if rng.random() < 0.2:
        imports.append(name("env") + name("f") + b"\x00" + uleb(rng.randrange(len(sigs))))
        summary.append("imports env.f")

    tables = [b"\x70" + limits(rng, 0, 20_000)]
    for _ in range(rng.randint(0, 2)):
        ref = rng.choice(["funcref", "externref", "anyref", "exnref"])
        flags = 0x04 if rng.random() < 0.3 else 0  # a 64-bit table
        tables.append(bytes([HEAPS[ref]]) + limits(rng, 0, 3_000, flags))
    memory_flags = rng.choice([0, 0, 0, 0x04, 0x02])  # mostly wasm32; sometimes 64-bit, shared
    memories = [limits(rng, 0, 400, memory_flags)]
    summary.append(f"tables {len(tables)}, memory flags {memory_flags}")

    globals_ = []
    for valtype in rng.sample(VALTYPES, k=rng.randint(0, 5)):
        globals_.append(encode(valtype) + bytes([rng.randint(0, 1)]) + default(valtype) + b"\x0b")

    grow_by = rng.choice([1, 100, 1000, 100_000, 1 << 30])
    pages = rng.choice([1, 16, 1000, 65536])
    index_const = b"\x42" if memory_flags & 0x04 else b"\x41"
    body = bytearray(b"\x00")  # no locals
    if rng.random() < 0.8:
        body += b"\x03\x40"  # loop
        body += b"\xd0\x70\x41" + sleb(grow_by) + b"\xfc\x0f\x00\x1a"  # table.grow 0, drop
        body += index_const + sleb(pages) + b"\x40\x00\x1a"  # memory.grow 0, drop
        body += b"\x0c\x00\x0b"  # br 0, end
    else:
        body += b"\x00"  # unreachable
    body += b"\x0b"
    summary.append(f"_start grows table by {grow_by}, memory by {pages} pages")
    codes = [uleb(len(body)) + bytes(body)]
    funcs = [uleb(0)]
    for index in range(1, len(sigs)):
        results = sigs[index][1]
        fbody = b"\x00" + b"".join(default(r) for r in results) + b"\x0b"
        codes.append(uleb(len(fbody)) + fbody)
        funcs.append(uleb(index))

    imported = len(imports)
    exports = [name("_start") + b"\x00" + uleb(imported)]
    exports += [name(f"f{i}") + b"\x00" + uleb(imported + i) for i in range(1, len(funcs))]
    exports += [name(f"t{i}") + b"\x01" + uleb(i) for i in range(len(tables))]
    exports.append(name("memory") + b"\x02\x00")
    exports += [name(f"g{i}") + b"\x03" + uleb(i) for i in range(len(globals_))]

    data = b"\0asm\x01\0\0\0" + section(1, types)
    if imports:
        data += section(2, vec(imports))
    data += section(3, vec(funcs)) + section(4, vec(tables)) + section(5, vec(memories))
    if globals_:
        data += section(6, vec(globals_))
    data += section(7, vec(exports)) + section(10, vec(codes))
    return Generated(data, summary)


def mutate(rng: random.Random, seed_module: bytes) -> bytes:
    """A seeded byte-level mutation: truncate, flip bytes, insert, or splice in a section."""
    data = bytearray(seed_module)
    match rng.randrange(5):
        case 0:
            del data[rng.randrange(8, len(data)) :]
        case 1:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(8, len(data))] = rng.randrange(256)
        case 2:
            pos = rng.randrange(8, len(data))
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        case 3:
            pos = rng.randrange(8, len(data))
            data[pos] = rng.choice([0x7B, 0x69, 0x6E, 0x70, 0x6F, 0x63, 0x64])  # value types
        case _:
            donor = module(rng).data
            start = rng.randrange(8, len(donor))
            pos = rng.randrange(8, len(data))
            data[pos:pos] = donor[start : start + rng.randint(1, 32)]
    return bytes(data)
