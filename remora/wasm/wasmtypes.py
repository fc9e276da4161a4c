"""The types of a module's imports and exports, read from its binary sections.

wasmtime-py names a value type through the C API's `wasm_valtype_kind`, which knows only the
MVP kinds and `funcref`/`externref`: for `v128`, `exnref`, `anyref`, typed references and every
other GC type it panics inside Rust, and the panic aborts the whole process. It also prints
`externref` as `anyref`. So remora never asks wasmtime to describe a type: once wasmtime has
validated a module, this reader decodes the type, import, function, table, memory, tag, global
and export sections itself (the binary format of the core spec plus the proposals wasmtime
enables by default: SIMD, reference types, GC, exceptions, memory64, threads, custom page
sizes). A module that wasmtime accepted but this reader cannot decode is reported as a format
error naming the offset, never described wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remora.wasm.errors import ModuleFormatError

_NUMERIC = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
_PACKED = {0x78: "i8", 0x77: "i16"}
# Abstract heap types, by their one-byte encoding.
_HEAP = {
    0x70: "func", 0x6F: "extern", 0x6E: "any", 0x6D: "eq", 0x6C: "i31", 0x6B: "struct",
    0x6A: "array", 0x69: "exn", 0x68: "cont", 0x71: "none", 0x72: "noextern", 0x73: "nofunc",
    0x74: "noexn", 0x75: "nocont",
}  # fmt: skip
# Nullable abstract references have shorthand names (`funcref`); the bottom types' are `null*`.
_SHORTHAND = {
    "none": "nullref", "noextern": "nullexternref", "nofunc": "nullfuncref",
    "noexn": "nullexnref", "nocont": "nullcontref",
}  # fmt: skip
_REF_NONNULL, _REF_NULL = 0x64, 0x63
_EXTERN_KINDS = ("func", "table", "memory", "global", "tag")


@dataclass(frozen=True)
class TypedExtern:
    """One import (`module` set) or export (`module` None) and its type in text form."""

    module: str | None
    name: str
    kind: str
    signature: str


@dataclass
class ModuleTypes:
    imports: list[TypedExtern] = field(default_factory=list)
    exports: list[TypedExtern] = field(default_factory=list)


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def fail(self, what: str) -> ModuleFormatError:
        return ModuleFormatError(f"offset {self.pos}: {what}")

    def u8(self) -> int:
        if self.pos >= self.end:
            raise self.fail("unexpected end of section")
        byte = self.data[self.pos]
        self.pos += 1
        return byte

    def peek(self) -> int:
        if self.pos >= self.end:
            raise self.fail("unexpected end of section")
        return self.data[self.pos]

    def uleb(self, bits: int = 32) -> int:
        result = shift = 0
        while True:
            byte = self.u8()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= bits + 7:
                raise self.fail("LEB128 too long")
        if result >> bits:
            raise self.fail(f"LEB128 value exceeds u{bits}")
        return result

    def sleb(self, bits: int) -> int:
        result = shift = 0
        while True:
            byte = self.u8()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= bits + 7:
                raise self.fail("LEB128 too long")
        if byte & 0x40:
            result -= 1 << shift
        return result

    def skip(self, count: int) -> None:
        if self.pos + count > self.end:
            raise self.fail("unexpected end of section")
        self.pos += count

    def name(self) -> str:
        length = self.uleb()
        start = self.pos
        self.skip(length)
        try:
            return self.data[start : self.pos].decode("utf-8")
        except UnicodeDecodeError:
            raise ModuleFormatError(f"offset {start}: name is not UTF-8") from None


def _heap_type(r: _Reader) -> str:
    byte = r.peek()
    if byte in _HEAP:
        r.pos += 1
        return _HEAP[byte]
    index = r.sleb(33)
    if index < 0:
        raise r.fail(f"unknown heap type {index}")
    return str(index)


def _ref_type(r: _Reader, lead: int) -> str:
    if lead in _HEAP:
        heap = _HEAP[lead]
        return _SHORTHAND.get(heap, f"{heap}ref")
    if lead in (_REF_NONNULL, _REF_NULL):
        heap = _heap_type(r)
        return f"(ref {'null ' if lead == _REF_NULL else ''}{heap})"
    raise ModuleFormatError(f"offset {r.pos - 1}: unknown value type 0x{lead:02x}")


def _val_type(r: _Reader) -> str:
    lead = r.u8()
    if lead in _NUMERIC:
        return _NUMERIC[lead]
    return _ref_type(r, lead)


def _storage_type(r: _Reader) -> str:
    if r.peek() in _PACKED:
        return _PACKED[r.u8()]
    return _val_type(r)


def _vec_types(r: _Reader) -> list[str]:
    return [_val_type(r) for _ in range(r.uleb())]


def _composite(r: _Reader) -> str:
    """A func type as `(params) -> (results)`; struct, array and continuation types by kind."""
    form = r.u8()
    if form == 0x60:
        params, results = _vec_types(r), _vec_types(r)
        return f"({', '.join(params)}) -> ({', '.join(results)})"
    if form == 0x5F:
        for _ in range(r.uleb()):
            _storage_type(r)
            r.u8()
        return "struct"
    if form == 0x5E:
        _storage_type(r)
        r.u8()
        return "array"
    if form == 0x5D:
        r.sleb(33)
        return "cont"
    raise ModuleFormatError(f"offset {r.pos - 1}: unknown type form 0x{form:02x}")


def _sub_type(r: _Reader) -> str:
    if r.peek() in (0x50, 0x4F):
        r.u8()
        for _ in range(r.uleb()):
            r.uleb()
    return _composite(r)


def _type_section(r: _Reader, types: list[str]) -> None:
    for _ in range(r.uleb()):
        if r.peek() == 0x4E:
            r.u8()
            types.extend(_sub_type(r) for _ in range(r.uleb()))
        else:
            types.append(_sub_type(r))


def _limits(r: _Reader, memory: bool) -> tuple[str, str]:
    """(index type, `min=.. max=..` plus sharing and page size) of a table or memory type."""
    flags = r.u8()
    if flags & ~0x0F or (not memory and flags & 0x0A):
        raise r.fail(f"unknown limits flags 0x{flags:02x}")
    bits = 64 if flags & 0x04 else 32
    minimum = r.uleb(bits)
    maximum = r.uleb(bits) if flags & 0x01 else None
    text = f"min={minimum} max={maximum}"
    if flags & 0x02:
        text += " shared"
    if flags & 0x08:
        text += f" page_size={1 << r.uleb()}"
    return f"i{bits}", text


def _table_type(r: _Reader) -> str:
    element = _ref_type(r, r.u8())
    index, limits = _limits(r, memory=False)
    return f"{element} {limits}" if index == "i32" else f"{index} {element} {limits}"


def _memory_type(r: _Reader) -> str:
    index, limits = _limits(r, memory=True)
    return f"{index} pages {limits}"


def _global_type(r: _Reader) -> str:
    content = _val_type(r)
    mutability = r.u8()
    if mutability > 1:
        raise r.fail(f"unknown global mutability {mutability}")
    return f"mut {content}" if mutability else content


# Immediates of the instructions allowed in constant expressions, so they can be skipped.
_CONST_FIXED = {0x43: 4, 0x44: 8}
_CONST_BARE = {0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E}
_GC_ONE_INDEX = {0, 1, 6, 7}
_GC_BARE = {26, 27, 28}
_V128_CONST = 12


def _skip_const_expr(r: _Reader) -> None:
    while True:
        op = r.u8()
        if op == 0x0B:
            return
        if op == 0x41:
            r.sleb(32)
        elif op == 0x42:
            r.sleb(64)
        elif op in _CONST_FIXED:
            r.skip(_CONST_FIXED[op])
        elif op in (0x23, 0xD2):
            r.uleb()
        elif op == 0xD0:
            _heap_type(r)
        elif op in _CONST_BARE:
            pass
        elif op == 0xFD and r.uleb() == _V128_CONST:
            r.skip(16)
        elif op == 0xFB:
            sub = r.uleb()
            if sub in _GC_ONE_INDEX:
                r.uleb()
            elif sub == 8:
                r.uleb()
                r.uleb()
            elif sub not in _GC_BARE:
                raise r.fail(f"unsupported GC instruction {sub} in a constant expression")
        else:
            raise r.fail(f"unsupported opcode 0x{op:02x} in a constant expression")


def _func_sig(types: list[str], index: int, r: _Reader) -> str:
    if index >= len(types):
        raise r.fail(f"type index {index} out of range")
    return types[index]


def module_types(data: bytes) -> ModuleTypes:
    """Describe the imports and exports of a module that wasmtime has already validated."""
    types: list[str] = []
    spaces: dict[str, list[str]] = {kind: [] for kind in _EXTERN_KINDS}
    result = ModuleTypes()
    exports: list[tuple[str, str, int]] = []
    pos = 8
    while pos < len(data):
        header = _Reader(data, pos, len(data))
        section_id = header.u8()
        size = header.uleb()
        r = _Reader(data, header.pos, header.pos + size)
        pos = r.end
        if section_id == 1:
            _type_section(r, types)
        elif section_id == 2:
            for _ in range(r.uleb()):
                module, name = r.name(), r.name()
                kind, sig = _import_desc(r, types)
                spaces[kind].append(sig)
                result.imports.append(TypedExtern(module, name, kind, sig))
        elif section_id == 3:
            spaces["func"].extend(_func_sig(types, r.uleb(), r) for _ in range(r.uleb()))
        elif section_id == 4:
            for _ in range(r.uleb()):
                with_init = r.peek() == 0x40
                if with_init:
                    r.skip(2)
                spaces["table"].append(_table_type(r))
                if with_init:
                    _skip_const_expr(r)
        elif section_id == 5:
            spaces["memory"].extend(_memory_type(r) for _ in range(r.uleb()))
        elif section_id == 6:
            for _ in range(r.uleb()):
                spaces["global"].append(_global_type(r))
                _skip_const_expr(r)
        elif section_id == 13:
            for _ in range(r.uleb()):
                r.u8()
                spaces["tag"].append(_func_sig(types, r.uleb(), r))
        elif section_id == 7:
            for _ in range(r.uleb()):
                name, kind_byte, index = r.name(), r.u8(), r.uleb()
                if kind_byte >= len(_EXTERN_KINDS):
                    raise r.fail(f"unknown export kind {kind_byte}")
                exports.append((name, _EXTERN_KINDS[kind_byte], index))
    for name, kind, index in exports:
        space = spaces[kind]
        if index >= len(space):
            raise ModuleFormatError(f"export {name!r}: {kind} index {index} out of range")
        result.exports.append(TypedExtern(None, name, kind, space[index]))
    return result


def _import_desc(r: _Reader, types: list[str]) -> tuple[str, str]:
    kind = r.u8()
    if kind == 0:
        return "func", _func_sig(types, r.uleb(), r)
    if kind == 1:
        return "table", _table_type(r)
    if kind == 2:
        return "memory", _memory_type(r)
    if kind == 3:
        return "global", _global_type(r)
    if kind == 4:
        r.u8()
        return "tag", _func_sig(types, r.uleb(), r)
    raise r.fail(f"unknown import kind {kind}")
