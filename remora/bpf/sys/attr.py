"""The base of every `union bpf_attr` member: integer fields refuse values they cannot hold.

ctypes stores an int into a `c_uint32` field modulo 2**32 without a word, so a BTF key type
sized 0x100000004 bytes would reach the kernel as a 4-byte key and create a map nobody asked for.
Every attr field is range-checked on construction and on assignment instead, and the error says
which field and what its range is. The per-op map fast path writes only values it has already
checked, through the field descriptor, so it does not pay for this.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from remora.bpf.errors import BPFError


@functools.cache
def _ranges(cls: type[ctypes.Structure]) -> dict[str, tuple[int, int, str]]:
    out: dict[str, tuple[int, int, str]] = {}
    for name, ctype, *_ in cls._fields_:
        if not issubclass(ctype, ctypes._SimpleCData) or getattr(ctype, "_type_", "") in "cfd?":
            continue
        bits = 8 * ctypes.sizeof(ctype)
        if ctype(-1).value < 0:
            out[name] = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1, f"s{bits}")
        else:
            out[name] = (0, (1 << bits) - 1, f"u{bits}")
    return out


def check_field(cls: type[ctypes.Structure], name: str, value: Any) -> None:
    bounds = _ranges(cls).get(name)
    if bounds is None or not isinstance(value, int):
        return
    lo, hi, spelled = bounds
    if not lo <= value <= hi:
        raise BPFError(
            f"{name} = {value} does not fit the kernel's {spelled} field ({lo}..{hi}); "
            "refusing to truncate it"
        )


class Attr(ctypes.Structure):
    def __init__(self, *args: Any, **fields: Any) -> None:
        cls = type(self)
        for (name, *_), value in zip(cls._fields_, args, strict=False):
            check_field(cls, name, value)
        for name, value in fields.items():
            check_field(cls, name, value)
        super().__init__(*args, **fields)

    def __setattr__(self, name: str, value: Any) -> None:
        check_field(type(self), name, value)
        super().__setattr__(name, value)
