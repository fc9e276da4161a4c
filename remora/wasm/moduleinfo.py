"""What a module imports, exports and carries, without instantiating it.

The custom-section walk is a pure function over bytes (the binary format is: magic, version, then
`id:u8 size:leb128-u32 payload` sections; custom sections, id 0, start with a length-prefixed
name). It runs before wasmtime's compile so a truncated or fuzzed file is reported with the byte
offset where it stops making sense.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import wasmtime

from remora.wasm.cache import compile_module
from remora.wasm.errors import ModuleFormatError
from remora.wasm.wasmtypes import module_types

WASM_MAGIC = b"\0asm"
CORE_VERSION = b"\x01\0\0\0"


@dataclass(frozen=True)
class CustomSection:
    name: str
    offset: int  # of the section's payload in the file
    size: int  # payload size, name included


@dataclass(frozen=True)
class Extern:
    module: str | None  # the import module; None for exports
    name: str
    kind: str  # func | memory | table | global | tag
    signature: str


@dataclass
class ModuleInfo:
    size: int
    imports: list[Extern] = field(default_factory=list)
    exports: list[Extern] = field(default_factory=list)
    custom_sections: list[CustomSection] = field(default_factory=list)

    @property
    def memories(self) -> list[Extern]:
        return [e for e in [*self.imports, *self.exports] if e.kind == "memory"]

    def to_json(self) -> dict[str, Any]:
        def ext(e: Extern) -> dict[str, Any]:
            return {"module": e.module, "name": e.name, "kind": e.kind, "type": e.signature}

        return {
            "size": self.size,
            "imports": [ext(e) for e in self.imports],
            "exports": [ext(e) for e in self.exports],
            "memories": [ext(e) for e in self.memories],
            "custom_sections": [
                {"name": c.name, "offset": c.offset, "size": c.size} for c in self.custom_sections
            ],
        }


def _leb_u32(data: bytes, pos: int, what: str) -> tuple[int, int]:
    result = shift = 0
    for i in range(5):
        if pos + i >= len(data):
            raise ModuleFormatError(f"offset {pos}: {what}: unexpected end of file in LEB128")
        byte = data[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > 0xFFFFFFFF:
                raise ModuleFormatError(f"offset {pos}: {what}: LEB128 value exceeds u32")
            return result, pos + i + 1
        shift += 7
    raise ModuleFormatError(f"offset {pos}: {what}: LEB128 longer than 5 bytes")


def custom_sections(data: bytes) -> list[CustomSection]:
    """Walk the section headers of a core module and return its custom sections."""
    if data[:4] != WASM_MAGIC:
        raise ModuleFormatError("offset 0: not a WebAssembly binary (bad magic)")
    if data[4:8] != CORE_VERSION:
        raise ModuleFormatError(
            f"offset 4: unsupported binary version {data[4:8].hex()} (only core modules, v1)"
        )
    found: list[CustomSection] = []
    pos = 8
    while pos < len(data):
        section_id = data[pos]
        size, body = _leb_u32(data, pos + 1, f"section {section_id} size")
        end = body + size
        if end > len(data):
            raise ModuleFormatError(
                f"offset {pos}: section {section_id} claims {size} bytes, "
                f"only {len(data) - body} remain"
            )
        if section_id == 0:
            name_len, name_at = _leb_u32(data, body, "custom section name length")
            if name_at + name_len > end:
                raise ModuleFormatError(f"offset {body}: custom section name overruns section")
            try:
                name = data[name_at : name_at + name_len].decode("utf-8")
            except UnicodeDecodeError:
                raise ModuleFormatError(
                    f"offset {name_at}: custom section name is not UTF-8"
                ) from None
            found.append(CustomSection(name, body, size))
        pos = end
    return found


def inspect_module(data: bytes, origin: str = "<bytes>") -> ModuleInfo:
    try:
        sections = custom_sections(data)
    except ModuleFormatError as exc:
        raise ModuleFormatError(f"{origin}: {exc}") from None
    # Compiling validates; the description comes from the bytes, never from wasmtime's type
    # objects (their names panic inside wasmtime for v128 and most reference types).
    compile_module(wasmtime.Engine(), data, origin)
    try:
        types = module_types(data)
    except ModuleFormatError as exc:
        raise ModuleFormatError(f"{origin}: cannot describe the module: {exc}") from None
    info = ModuleInfo(size=len(data), custom_sections=sections)
    info.imports.extend(Extern(t.module, t.name, t.kind, t.signature) for t in types.imports)
    info.exports.extend(Extern(None, t.name, t.kind, t.signature) for t in types.exports)
    return info
