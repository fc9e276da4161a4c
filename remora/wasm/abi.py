"""Dataclass structs <-> Wasm linear memory, with the C ABI layout computed once.

This is the Python form of "struct tags generate the Wasm ABI": a `@wasm_struct` dataclass whose
fields are annotated with wasm32 C types gets its layout (size, alignment, every offset, and the
padding between fields) at class-creation time. A ctypes mirror of the layout is built from it and
checked against ctypes' own offsets, and reads/writes go through `ctype.from_address` on the
memory's data pointer, so a `StructView` touches guest memory with no copy at all.

Layout rules are the wasm32 C ABI (clang `--target=wasm32`): every scalar is aligned to its size
(i64/u64/f64 to 8), bool is one byte, pointers are u32 offsets, a struct is aligned to its most
aligned field and its size is rounded up to that alignment.
"""

from __future__ import annotations

import ctypes
import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias, TypeVar

import wasmtime

from remora.wasm.errors import BindingError, StaleViewError


@dataclass(frozen=True)
class Scalar:
    name: str
    size: int
    ctype: Any  # a ctypes simple type
    c_type: str
    wit: str
    wasm: str  # the Wasm value type used when passed to/from functions
    lo: float
    hi: float

    @property
    def align(self) -> int:
        return self.size

    def check(self, value: Any, where: str) -> None:
        if self.wasm in ("f32", "f64"):
            if not isinstance(value, int | float):
                raise BindingError(f"{where}: expected a number for {self.name}, got {value!r}")
            return
        if not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise BindingError(f"{where}: {value!r} does not fit {self.name}")


def _int(name: str, size: int, signed: bool, ctype: Any) -> Scalar:
    bits = size * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    c_type = f"{'' if signed else 'u'}int{bits}_t"
    wit = f"{'s' if signed else 'u'}{bits}"
    return Scalar(name, size, ctype, c_type, wit, "i64" if size == 8 else "i32", lo, hi)


i8 = _int("i8", 1, True, ctypes.c_int8)
u8 = _int("u8", 1, False, ctypes.c_uint8)
i16 = _int("i16", 2, True, ctypes.c_int16)
u16 = _int("u16", 2, False, ctypes.c_uint16)
i32 = _int("i32", 4, True, ctypes.c_int32)
u32 = _int("u32", 4, False, ctypes.c_uint32)
i64 = _int("i64", 8, True, ctypes.c_int64)
u64 = _int("u64", 8, False, ctypes.c_uint64)
f32 = Scalar("f32", 4, ctypes.c_float, "float", "f32", "f32", float("-inf"), float("inf"))
f64 = Scalar("f64", 8, ctypes.c_double, "double", "f64", "f64", float("-inf"), float("inf"))
boolean = Scalar("bool", 1, ctypes.c_bool, "bool", "bool", "i32", 0, 1)


@dataclass(frozen=True)
class Array:
    """A fixed-length C array `elem[length]`; read back as a Python list."""

    elem: Any  # Scalar or a @wasm_struct class
    length: int


@dataclass(frozen=True)
class Ptr:
    """A guest pointer: a u32 offset into linear memory, to `target` (a struct class or Scalar)."""

    target: Any

    size = 4
    align = 4


# Annotation aliases for dataclass fields and typed function signatures.
I8: TypeAlias = Annotated[int, i8]
U8: TypeAlias = Annotated[int, u8]
I16: TypeAlias = Annotated[int, i16]
U16: TypeAlias = Annotated[int, u16]
I32: TypeAlias = Annotated[int, i32]
U32: TypeAlias = Annotated[int, u32]
I64: TypeAlias = Annotated[int, i64]
U64: TypeAlias = Annotated[int, u64]
F32: TypeAlias = Annotated[float, f32]
F64: TypeAlias = Annotated[float, f64]
Bool: TypeAlias = Annotated[bool, boolean]

Spec = Scalar | Array | Ptr | type


@dataclass(frozen=True)
class FieldLayout:
    name: str
    offset: int
    size: int
    align: int
    spec: Spec


@dataclass(frozen=True)
class StructLayout:
    name: str
    size: int
    align: int
    fields: tuple[FieldLayout, ...]
    padding: tuple[tuple[int, int], ...]  # (offset, bytes), including tail padding
    ctype: Any  # the ctypes.Structure mirror
    cls: Any  # the dataclass

    def describe(self) -> str:
        """A pahole-style table: offset, size, field, with the holes spelled out."""
        rows = [f"struct {self.name} {{  /* size {self.size}, align {self.align} */"]
        holes = dict(self.padding)
        cursor = 0
        for f in self.fields:
            if cursor in holes:
                rows.append(f"    /* {cursor:4} {holes[cursor]:4} */  <padding>")
            rows.append(f"    /* {f.offset:4} {f.size:4} */  {f.name}: {spec_name(f.spec)}")
            cursor = f.offset + f.size
        if cursor in holes:
            rows.append(f"    /* {cursor:4} {holes[cursor]:4} */  <tail padding>")
        rows.append(f"}};  /* {sum(n for _, n in self.padding)} padding bytes */")
        return "\n".join(rows)


T = TypeVar("T")
_LAYOUT_ATTR = "__wasm_layout__"


def is_wasm_struct(obj: object) -> bool:
    return isinstance(obj, type) and hasattr(obj, _LAYOUT_ATTR)


def layout_of(cls: type) -> StructLayout:
    layout = getattr(cls, _LAYOUT_ATTR, None)
    if not isinstance(layout, StructLayout):
        raise BindingError(f"{getattr(cls, '__name__', cls)!r} is not a @wasm_struct")
    return layout


def spec_name(spec: Spec) -> str:
    if isinstance(spec, Scalar):
        return spec.name
    if isinstance(spec, Array):
        return f"{spec_name(spec.elem)}[{spec.length}]"
    if isinstance(spec, Ptr):
        target = spec.target if isinstance(spec.target, str) else spec_name(spec.target)
        return f"*{target}"
    return f"struct {spec.__name__}"


def spec_from_annotation(annotation: Any, where: str) -> Spec:
    """The ABI spec an annotation denotes (`I32`, `Annotated[..., Array(...)]`, a struct class)."""
    if typing.get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, Scalar | Array | Ptr):
                if isinstance(meta, Array) and meta.length <= 0:
                    raise BindingError(f"{where}: array length must be positive")
                return meta
    if is_wasm_struct(annotation):
        return typing.cast(type, annotation)
    raise BindingError(f"{where}: {annotation!r} is not a wasm32 ABI type")


def size_align(spec: Spec) -> tuple[int, int]:
    if isinstance(spec, Scalar):
        return spec.size, spec.align
    if isinstance(spec, Ptr):
        return Ptr.size, Ptr.align
    if isinstance(spec, Array):
        size, align = size_align(spec.elem)
        return size * spec.length, align
    layout = layout_of(spec)
    return layout.size, layout.align


def _ctype(spec: Spec) -> Any:
    if isinstance(spec, Scalar):
        return spec.ctype
    if isinstance(spec, Ptr):
        return ctypes.c_uint32
    if isinstance(spec, Array):
        return _ctype(spec.elem) * spec.length
    return layout_of(spec).ctype


def wasm_struct(cls: type[T]) -> type[T]:
    """Make `cls` a dataclass (if it is not one yet) with a computed wasm32 C layout."""
    if not dataclasses.is_dataclass(cls):
        cls = dataclasses.dataclass(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: list[FieldLayout] = []
    padding: list[tuple[int, int]] = []
    offset, struct_align = 0, 1
    for field in dataclasses.fields(typing.cast(Any, cls)):
        spec = spec_from_annotation(hints[field.name], f"{cls.__name__}.{field.name}")
        size, align = size_align(spec)
        aligned = -(-offset // align) * align
        if aligned > offset:
            padding.append((offset, aligned - offset))
        fields.append(FieldLayout(field.name, aligned, size, align, spec))
        offset, struct_align = aligned + size, max(struct_align, align)
    if not fields:
        raise BindingError(f"{cls.__name__}: a wasm struct needs at least one field")
    size = -(-offset // struct_align) * struct_align
    if size > offset:
        padding.append((offset, size - offset))
    ctype = type(
        f"{cls.__name__}_c",
        (ctypes.Structure,),
        {"_fields_": [(f.name, _ctype(f.spec)) for f in fields]},
    )
    # The ctypes mirror follows the host's C ABI; it must agree with the wasm32 layout above.
    for f in fields:
        if getattr(ctype, f.name).offset != f.offset:
            raise BindingError(f"{cls.__name__}.{f.name}: ctypes offset disagrees with wasm32")
    if ctypes.sizeof(ctype) != size:
        raise BindingError(f"{cls.__name__}: ctypes size disagrees with wasm32 layout")
    layout = StructLayout(
        cls.__name__, size, struct_align, tuple(fields), tuple(padding), ctype, cls
    )
    setattr(cls, _LAYOUT_ATTR, layout)
    return cls


# --- conversions between Python values and the ctypes mirror -------------------------------------


def _to_c(spec: Spec, value: Any, where: str) -> Any:
    if isinstance(spec, Scalar):
        spec.check(value, where)
        return value
    if isinstance(spec, Ptr):
        u32.check(value, where)
        return value
    if isinstance(spec, Array):
        if len(value) != spec.length:
            raise BindingError(f"{where}: expected {spec.length} elements, got {len(value)}")
        arr = _ctype(spec)()
        for i, item in enumerate(value):
            arr[i] = _to_c(spec.elem, item, f"{where}[{i}]")
        return arr
    if not isinstance(value, spec):
        raise BindingError(f"{where}: expected {spec.__name__}, got {type(value).__name__}")
    return to_ctype(value)


def to_ctype(value: Any) -> Any:
    layout = layout_of(type(value))
    obj = layout.ctype()
    for f in layout.fields:
        setattr(obj, f.name, _to_c(f.spec, getattr(value, f.name), f"{layout.name}.{f.name}"))
    return obj


def _from_c(spec: Spec, raw: Any) -> Any:
    if isinstance(spec, Scalar | Ptr):
        return raw
    if isinstance(spec, Array):
        return [_from_c(spec.elem, raw[i]) for i in range(spec.length)]
    return from_ctype(spec, raw)


def from_ctype(cls: type[T], obj: Any) -> T:
    layout = layout_of(cls)
    return cls(**{f.name: _from_c(f.spec, getattr(obj, f.name)) for f in layout.fields})


# --- linear memory ----------------------------------------------------------------------------


class LinearMemory:
    """Bounds- and alignment-checked typed access to one instance's exported memory."""

    def __init__(self, store: wasmtime.Store | wasmtime.Caller, memory: wasmtime.Memory) -> None:
        self.store = store
        self.memory = memory

    def base(self) -> int:
        address = ctypes.cast(self.memory.data_ptr(self.store), ctypes.c_void_p).value
        return int(address or 0)

    def size(self) -> int:
        return int(self.memory.data_len(self.store))

    def _address(self, addr: int, size: int, align: int, what: str) -> int:
        if not isinstance(addr, int) or addr < 0 or addr + size > self.size():
            raise BindingError(f"{what} at {addr!r}: outside linear memory ({self.size()} bytes)")
        if addr % align:
            raise BindingError(f"{what} at {addr}: misaligned (needs {align}-byte alignment)")
        return self.base() + addr

    def write(self, addr: int, value: Any) -> None:
        layout = layout_of(type(value))
        dest = self._address(addr, layout.size, layout.align, f"struct {layout.name}")
        src = to_ctype(value)
        ctypes.memmove(dest, ctypes.addressof(src), layout.size)

    def read(self, cls: type[T], addr: int) -> T:
        layout = layout_of(cls)
        src = self._address(addr, layout.size, layout.align, f"struct {layout.name}")
        return from_ctype(cls, layout.ctype.from_address(src))

    def write_array(self, addr: int, values: Sequence[Any]) -> None:
        if not values:
            return
        layout = layout_of(type(values[0]))
        total = layout.size * len(values)
        dest = self._address(addr, total, layout.align, f"struct {layout.name}[{len(values)}]")
        for i, value in enumerate(values):
            if type(value) is not type(values[0]):
                raise BindingError(f"array element {i}: mixed struct types")
            src = to_ctype(value)
            ctypes.memmove(dest + i * layout.size, ctypes.addressof(src), layout.size)

    def read_array(self, cls: type[T], addr: int, count: int) -> list[T]:
        layout = layout_of(cls)
        src = self._address(addr, layout.size * count, layout.align, f"struct {layout.name}")
        array = (layout.ctype * count).from_address(src)
        return [from_ctype(cls, array[i]) for i in range(count)]

    def view(self, cls: type, addr: int) -> StructView:
        return StructView(self, layout_of(cls), addr)


class StructView:
    """Zero-copy access to a struct living in guest memory.

    The view remembers the memory's base address and size when it was made. Any access after
    the memory grew (or moved) raises `StaleViewError` instead of touching stale or unmapped host
    memory; make a new view after calls that may grow memory.
    """

    __slots__ = ("_addr", "_base", "_layout", "_mem", "_obj", "_size")
    _mem: LinearMemory
    _layout: StructLayout
    _addr: int
    _base: int
    _size: int
    _obj: Any

    def __init__(self, mem: LinearMemory, layout: StructLayout, addr: int) -> None:
        object.__setattr__(self, "_mem", mem)
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_addr", addr)
        host = mem._address(addr, layout.size, layout.align, f"struct {layout.name}")
        object.__setattr__(self, "_base", mem.base())
        object.__setattr__(self, "_size", mem.size())
        object.__setattr__(self, "_obj", layout.ctype.from_address(host))

    @property
    def address(self) -> int:
        return int(self._addr)

    def _live(self) -> Any:
        if self._mem.base() != self._base or self._mem.size() != self._size:
            raise StaleViewError(
                f"view of struct {self._layout.name} at {self._addr}: linear memory changed "
                f"({self._size} -> {self._mem.size()} bytes); make a new view"
            )
        return self._obj

    def _field(self, name: str) -> FieldLayout:
        for f in self._layout.fields:
            if f.name == name:
                return f
        raise AttributeError(f"struct {self._layout.name} has no field {name!r}")

    def __getattr__(self, name: str) -> Any:
        spec = self._field(name).spec
        obj = self._live()
        if is_wasm_struct(spec):
            return StructView(
                self._mem, layout_of(typing.cast(type, spec)), self._addr + self._field(name).offset
            )
        return _from_c(spec, getattr(obj, name))

    def __setattr__(self, name: str, value: Any) -> None:
        f = self._field(name)
        obj = self._live()
        setattr(obj, name, _to_c(f.spec, value, f"{self._layout.name}.{name}"))

    def load(self) -> Any:
        """Copy the whole struct out as its dataclass."""
        return from_ctype(self._layout.cls, self._live())


def exported_memory(
    store: wasmtime.Store | wasmtime.Caller, instance_or_caller: Any
) -> LinearMemory:
    """The `memory` export of an instance (or of the caller of a host function)."""
    if isinstance(instance_or_caller, wasmtime.Caller):
        memory = instance_or_caller.get("memory")
    else:
        memory = instance_or_caller.exports(store).get("memory")
    if not isinstance(memory, wasmtime.Memory):
        raise BindingError("guest does not export a memory named 'memory'")
    return LinearMemory(store, memory)
