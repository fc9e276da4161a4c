"""The base of every `union bpf_attr` member: integer fields refuse values they cannot hold.

ctypes stores an int into a `c_uint32` field modulo 2**32 without a word, so a BTF key type
sized 0x100000004 bytes would reach the kernel as a 4-byte key and create a map nobody asked for.
Every attr field is range-checked on construction and on assignment instead, and the error says
which field and what its range is. Construction stores through the field descriptors rather than
ctypes' own `__init__` (which would call the checking `__setattr__` once more per field), so a
checked attr costs little more than a plain one on the slow map path. The per-op map fast path
writes only values it has already checked, straight through the field descriptor.
"""

from __future__ import annotations

import ctypes
from typing import Any

from remora.bpf.errors import BPFError

# Per attr class: field name -> (its descriptor's setter, lowest, highest, spelling). Char
# arrays (names) have no bounds here: ctypes length-checks those itself.
_Field = tuple[Any, int, int, str]
_FIELDS: dict[type, dict[str, _Field]] = {}


def _fields(cls: type[ctypes.Structure]) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    for name, ctype, *_ in cls._fields_:
        setter = getattr(cls, name).__set__
        lo, hi, spelled = 0, -1, ""
        if issubclass(ctype, ctypes._SimpleCData) and ctype not in (ctypes.c_char, ctypes.c_bool):
            bits = 8 * ctypes.sizeof(ctype)
            signed = ctype(-1).value < 0
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            spelled = f"{'s' if signed else 'u'}{bits}"
        out[name] = (setter, lo, hi, spelled)
    _FIELDS[cls] = out
    return out


class Attr(ctypes.Structure):
    def __init__(self, **values: Any) -> None:
        fields = _FIELDS.get(type(self)) or _fields(type(self))
        for name, value in values.items():
            setter, lo, hi, spelled = fields[name]
            if spelled and type(value) is int and not lo <= value <= hi:
                _refuse(name, value, lo, hi, spelled)
            setter(self, value)

    def __setattr__(self, name: str, value: Any) -> None:
        fields = _FIELDS.get(type(self)) or _fields(type(self))
        f = fields.get(name)
        if f is not None and f[3] and type(value) is int and not f[1] <= value <= f[2]:
            _refuse(name, value, f[1], f[2], f[3])
        ctypes.Structure.__setattr__(self, name, value)


def _refuse(name: str, value: int, lo: int, hi: int, spelled: str) -> None:
    raise BPFError(
        f"{name} = {value} does not fit the kernel's {spelled} field ({lo}..{hi}); "
        "refusing to truncate it"
    )
