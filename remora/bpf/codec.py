"""Key/value codecs: how Python values meet the bytes a map stores.

A codec owns a size and turns a Python value into a ctypes buffer the kernel can read, and a
buffer the kernel wrote into back into a Python value. Buffers are fresh ctypes objects that the
kernel fills in place, so decoding a ctypes Structure value costs no copy at all (the Structure
*is* the buffer) and ints/bytes cost exactly one. The supported Python types are `int`
(unsigned, little-endian, any size), `bytes`, ctypes scalars (`c_uint32`, `c_int64`, `c_bool`,
`c_double`, ...; they read back as Python numbers), and any ctypes Structure/Union/Array type;
kernel objects (maps, programs) encode as their fd for fd-valued maps.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

from remora.bpf.errors import BPFError

Buf = ctypes.Array[ctypes.c_char]
_UINT = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}
_CAST = {1: "B", 2: "H", 4: "I", 8: "Q"}


class Codec(Protocol):
    size: int

    def encode(self, value: Any) -> ctypes._CData: ...
    def new(self) -> ctypes._CData: ...
    def decode(self, buf: ctypes._CData) -> Any: ...
    def decode_many(self, buf: Buf, count: int, stride: int) -> list[Any]: ...
    def encode_into(self, buf: Buf, index: int, stride: int, value: Any) -> None: ...


class BytesCodec:
    """Raw bytes; encoding checks the length so a short key never reads stack garbage."""

    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: Any) -> ctypes._CData:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"expected bytes of length {self.size}, got {type(value).__name__}")
        if len(value) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(value)}")
        return ctypes.create_string_buffer(bytes(value), self.size)

    def new(self) -> ctypes._CData:
        return ctypes.create_string_buffer(self.size)

    def decode(self, buf: ctypes._CData) -> Any:
        return bytes(buf)[: self.size]

    def decode_many(self, buf: Buf, count: int, stride: int) -> list[Any]:
        view = memoryview(buf).cast("B")  # slicing a view copies each value exactly once
        return [bytes(view[i * stride : i * stride + self.size]) for i in range(count)]

    def encode_into(self, buf: Buf, index: int, stride: int, value: Any) -> None:
        data = bytes(self.encode(value))[: self.size]
        ctypes.memmove(ctypes.addressof(buf) + index * stride, data, self.size)


class IntCodec:
    """Unsigned little-endian ints of 1, 2, 4, 8 bytes via ctypes; other sizes via int.to_bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.ctype = _UINT.get(size)

    def encode(self, value: Any) -> ctypes._CData:
        if not isinstance(value, int):
            # objects owning a kernel fd (Map, Program) are stored by fd
            fd = getattr(value, "fd", None)
            if fd is None:
                raise TypeError(f"expected int, got {type(value).__name__}")
            value = fd.raw
        if value < 0 or value >= 1 << (8 * self.size):
            raise ValueError(f"{value} does not fit in {self.size} unsigned bytes")
        if self.ctype is not None:
            return self.ctype(value)
        return ctypes.create_string_buffer(value.to_bytes(self.size, "little"), self.size)

    def new(self) -> ctypes._CData:
        if self.ctype is not None:
            return self.ctype()
        return ctypes.create_string_buffer(self.size)

    def decode(self, buf: ctypes._CData) -> Any:
        if self.ctype is not None:
            return buf.value  # type: ignore[attr-defined]
        return int.from_bytes(bytes(buf)[: self.size], "little")

    def decode_many(self, buf: Buf, count: int, stride: int) -> list[Any]:
        if stride == self.size and self.size in _CAST:
            view = memoryview(buf).cast("B")[: count * stride]
            out: list[Any] = view.cast(_CAST[self.size]).tolist()  # type: ignore[call-overload]
            return out
        view = memoryview(buf).cast("B")
        return [
            int.from_bytes(view[i * stride : i * stride + self.size], "little")
            for i in range(count)
        ]

    def encode_into(self, buf: Buf, index: int, stride: int, value: Any) -> None:
        ctypes.memmove(
            ctypes.addressof(buf) + index * stride, ctypes.byref(self.encode(value)), self.size
        )


class CTypeCodec:
    """A ctypes Structure/Union/Array type. Lookups return a fresh instance the kernel filled."""

    def __init__(self, ctype: type[ctypes._CData]) -> None:
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)

    def encode(self, value: Any) -> ctypes._CData:
        if not isinstance(value, self.ctype):
            raise TypeError(f"expected {self.ctype.__name__}, got {type(value).__name__}")
        return value

    def new(self) -> ctypes._CData:
        return self.ctype()

    def decode(self, buf: ctypes._CData) -> Any:
        return buf

    def decode_many(self, buf: Buf, count: int, stride: int) -> list[Any]:
        # from_buffer shares the batch buffer: each element is a view, not a copy.
        make = self.ctype.from_buffer  # type: ignore[attr-defined]
        return [make(buf, i * stride) for i in range(count)]

    def encode_into(self, buf: Buf, index: int, stride: int, value: Any) -> None:
        ctypes.memmove(
            ctypes.addressof(buf) + index * stride, ctypes.byref(self.encode(value)), self.size
        )


class ScalarCodec:
    """A signed, bool or floating-point ctypes scalar (`c_int32`, `c_bool`, `c_double`).

    Unsigned ctypes integers use `IntCodec`, which they match exactly, and so keep its fast
    path. Values are range-checked here because ctypes itself truncates silently.
    """

    def __init__(self, ctype: Any) -> None:
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)
        self.code: str = ctype._type_
        self.integral = self.code not in "fd"
        bits = 8 * self.size
        self.bounds = (0, 1) if self.code == "?" else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)

    def encode(self, value: Any) -> ctypes._CData:
        if isinstance(value, self.ctype):
            return value  # type: ignore[no-any-return]
        if self.integral:
            if not isinstance(value, int):
                raise TypeError(f"expected int, got {type(value).__name__}")
            lo, hi = self.bounds
            if not lo <= value <= hi:
                raise ValueError(f"{value} does not fit in {self.ctype.__name__}")
        elif not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        return self.ctype(value)  # type: ignore[no-any-return]

    def new(self) -> ctypes._CData:
        return self.ctype()  # type: ignore[no-any-return]

    def decode(self, buf: ctypes._CData) -> Any:
        return buf.value  # type: ignore[attr-defined]

    def decode_many(self, buf: Buf, count: int, stride: int) -> list[Any]:
        make = self.ctype.from_buffer
        return [make(buf, i * stride).value for i in range(count)]

    def encode_into(self, buf: Buf, index: int, stride: int, value: Any) -> None:
        ctypes.memmove(
            ctypes.addressof(buf) + index * stride, ctypes.byref(self.encode(value)), self.size
        )


def is_scalar_ctype(kind: Any) -> bool:
    """A ctypes integer, bool or floating-point type (pointers and chars are not scalars)."""
    return (
        isinstance(kind, type)
        and issubclass(kind, ctypes._SimpleCData)
        and getattr(kind, "_type_", "") in _SCALAR_CODES
    )


_SCALAR_CODES = frozenset("bBhHiIlLqQ?fd")


def codec_for(kind: Any, size: int, what: str) -> Codec:
    """Pick a codec for a Python type (`int`, `bytes`, a ctypes type) and check the size."""
    if kind is bytes:
        return BytesCodec(size)
    if kind is int:
        if size == 0:
            raise BPFError(f"{what}: int codec needs a non-zero size")
        return IntCodec(size)
    if isinstance(kind, type) and issubclass(kind, ctypes.Structure | ctypes.Union | ctypes.Array):
        actual = ctypes.sizeof(kind)
        if actual != size:
            raise BPFError(f"{what}: {kind.__name__} is {actual} bytes but the map has {size}")
        return CTypeCodec(kind)
    if is_scalar_ctype(kind):
        actual = ctypes.sizeof(kind)
        if actual != size:
            raise BPFError(f"{what}: {kind.__name__} is {actual} bytes but the map has {size}")
        if kind._type_ in "BHILQ":  # unsigned: exactly what IntCodec stores
            return IntCodec(size)
        return ScalarCodec(kind)
    raise TypeError(
        f"{what}: unsupported type {kind!r} (use int, bytes, a ctypes scalar such as "
        "c_uint32, or a ctypes Structure, Union or Array)"
    )
