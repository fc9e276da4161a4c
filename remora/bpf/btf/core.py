"""CO-RE relocations: compute what each one resolves to against a target BTF, and patch it in.

clang compiles accesses to `preserve_access_index` types (and the `__builtin_preserve_*`
builtins) against the program's own, local, definitions and records each such instruction in
.BTF.ext as a `struct bpf_core_relo`: the instruction, a local type, an access string ("0:2:1":
array index, then member or element indexes) and what is wanted (an offset, a size, existence,
a type id, an enumerator's value...). The loader re-asks the question of the running kernel's
BTF and rewrites the instruction, which is what keeps one object correct across kernels.

The rules are libbpf's, as documented in the kernel's BTF/CO-RE documentation and libbpf's
`relo_core.c` contract, because objects are written against them:

* candidates are target types of a compatible kind whose name equals the local one once a
  `___flavour` suffix is dropped from either side;
* a field access matches member by member (names compared exactly, anonymous members searched
  through), array indexes must fit (a flexible last member takes any index), and the field
  types must be compatible; every matching candidate must agree on the result;
* a relocation nothing satisfies does not fail the load: field existence, enumerator existence
  and type-based questions become 0, and everything else *poisons* its instruction (a call to
  helper 0xbad2310), so the verifier objects only if that instruction can run;
* the instruction must hold the value clang computed locally (unless the value is a type id or
  a bitfield detail, which linking or layout may legitimately change), which catches objects
  that were edited or mis-generated.

Everything here is sans-IO: `Types` is anything that decodes a type by id (`Spec` for the
object, the lazy `kernel.KernelBTF` for the target), so nothing forces a full vmlinux parse.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Callable
from typing import Protocol

from remora.bpf.btf.types import Kind, Type, type_size
from remora.bpf.errors import BPFLoadError

POISON_IMM = 195896080  # 0xbad2310: "invalid func unknown#195896080" in the verifier log
_MAX_ACCESS = 64  # BPF_CORE_SPEC_MAX_LEN
_MAX_DEPTH = 32
_U64 = (1 << 64) - 1
_INSN = struct.Struct("<BBhi")
_MODS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
_COMPOSITE = frozenset({Kind.STRUCT, Kind.UNION})
_ENUMS = frozenset({Kind.ENUM, Kind.ENUM64})
_BTF_INT_SIGNED = 1


class ReloKind(enum.IntEnum):
    """`enum bpf_core_relo_kind`."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


_FIELD_KINDS = frozenset(range(0, 6))
_TYPE_KINDS = frozenset({6, 7, 8, 9, 12})
_ENUM_KINDS = frozenset({10, 11})


class Types(Protocol):
    def type(self, tid: int) -> Type: ...


class Target(Types, Protocol):
    def named_like(self, essential: str) -> list[int]:
        """Type ids named `essential` or `essential___*`, ascending."""
        ...


class Unsatisfiable(BPFLoadError):
    """A relocation that cannot be applied at all (not merely unresolved)."""


@dataclasses.dataclass(frozen=True)
class Relo:
    """One relocation of a linked program: `insn` is program-relative."""

    insn: int
    type_id: int
    access: str
    kind: int


@dataclasses.dataclass
class Accessor:
    type_id: int  # the struct/union (named access) or array element type (index access)
    idx: int
    name: str | None  # None: an array index


@dataclasses.dataclass
class CoreSpec:
    """A parsed access path in one BTF (libbpf's `struct bpf_core_spec`)."""

    types: Types
    root_type_id: int
    kind: int
    raw: list[int] = dataclasses.field(default_factory=list)
    accessors: list[Accessor] = dataclasses.field(default_factory=list)
    bit_offset: int = 0


@dataclasses.dataclass
class Result:
    """What one relocation resolved to, before patching (libbpf's `bpf_core_relo_res`)."""

    orig: int = 0
    new: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0


class _Poison(Exception):
    """Internal: the relocation cannot be resolved on this target; poison the instruction."""


# type helpers ---------------------------------------------------------------------------------
def skip_mods(types: Types, tid: int) -> Type:
    t = types.type(tid)
    for _ in range(_MAX_ACCESS):
        if t.kind not in _MODS:
            return t
        t = types.type(t.ref)
    raise Unsatisfiable(f"type {tid}: more than {_MAX_ACCESS} modifiers in a row")


def resolve_size(types: Types, tid: int) -> int:
    """`btf__resolve_size`: the byte size, or Unsatisfiable for a type without one."""
    try:
        size = type_size(types.type, tid)
    except BPFLoadError as e:
        raise Unsatisfiable(str(e).removeprefix("BTF: ")) from None
    if size > 0xFFFFFFFF:
        raise Unsatisfiable(f"type {tid}: size {size} does not fit in 32 bits")
    return size


def essential_len(name: str) -> int:
    """Length of `name` without its `___flavour` suffix (the last `x___y` with x, y not `_`)."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1 : i + 4] == "___" and name[i + 4] != "_":
            return i + 1
    return len(name)


def _names_match(local: str, targ: str) -> bool:
    """Names equal once flavours are dropped; an anonymous target matches only anonymous."""
    if not targ:
        return not local
    n = essential_len(local)
    return essential_len(targ) == n and local[:n] == targ[:n]


def _kind_compat(a: Type, b: Type) -> bool:
    return a.kind == b.kind or (a.kind in _ENUMS and b.kind in _ENUMS)


def _enum_signed(t: Type) -> bool:
    return t.kind_flag  # BTF keeps an enum's signedness in kind_flag


# parsing the local access string ------------------------------------------------------------
def parse_spec(types: Types, relo: Relo) -> CoreSpec:
    try:
        kind = ReloKind(relo.kind)
    except ValueError:
        raise Unsatisfiable(f"unknown CO-RE relocation kind {relo.kind}") from None
    parts = relo.access.split(":") if relo.access else []
    if not parts or len(parts) > _MAX_ACCESS or not all(p.isdigit() for p in parts):
        raise Unsatisfiable(f"malformed access string {relo.access!r}")
    raw = [int(p) for p in parts]
    spec = CoreSpec(types, relo.type_id, kind, raw)
    if kind in _TYPE_KINDS:
        if relo.access != "0":
            raise Unsatisfiable(f"type relocation with access string {relo.access!r}, not '0'")
        return spec
    t = skip_mods(types, relo.type_id)
    tid = t.id
    idx = raw[0]
    if kind in _ENUM_KINDS:
        if t.kind not in _ENUMS or len(raw) > 1 or idx >= len(t.enum_values):
            raise Unsatisfiable(f"enumerator index {idx} is not in {_describe(types, t)}")
        spec.accessors.append(Accessor(tid, idx, t.enum_values[idx][0]))
        return spec
    spec.accessors.append(Accessor(tid, idx, None))
    spec.bit_offset = idx * resolve_size(types, tid) * 8
    for idx in raw[1:]:
        t = skip_mods(types, tid)
        tid = t.id
        if t.kind in _COMPOSITE:
            if idx >= len(t.members):
                raise Unsatisfiable(f"member index {idx} is beyond {_describe(types, t)}")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.accessors.append(Accessor(tid, idx, m.name))
            tid = m.type
        elif t.kind == Kind.ARRAY:
            elem = skip_mods(types, t.elem)
            if not _is_flex(types, spec.accessors[-1], t) and idx >= t.nelems:
                raise Unsatisfiable(f"index {idx} is beyond array of {t.nelems}")
            tid = elem.id
            spec.accessors.append(Accessor(tid, idx, None))
            spec.bit_offset += idx * resolve_size(types, tid) * 8
        else:
            raise Unsatisfiable(f"access {relo.access!r} goes through {_describe(types, t)}")
    return spec


def _is_flex(types: Types, acc: Accessor, arr: Type) -> bool:
    """A zero-length array that is the last member of its struct takes any index."""
    if acc.name is None or arr.nelems > 0:
        return False
    return acc.idx == len(types.type(acc.type_id).members) - 1


# matching against one candidate ---------------------------------------------------------------
def match_spec(local: CoreSpec, targ: Types, targ_id: int) -> CoreSpec | None:
    spec = CoreSpec(targ, targ_id, local.kind)
    if local.kind in _TYPE_KINDS:
        if local.kind == ReloKind.TYPE_MATCHES:
            ok = types_match(local.types, local.root_type_id, targ, targ_id, False, _MAX_DEPTH)
        else:
            ok = types_are_compat(local.types, local.root_type_id, targ, targ_id, _MAX_DEPTH)
        return spec if ok else None
    if local.kind in _ENUM_KINDS:
        t = skip_mods(targ, targ_id)
        if t.kind not in _ENUMS:
            return None
        want = local.accessors[0].name or ""
        for i, (name, _) in enumerate(t.enum_values):
            if _names_match(want, name) and name:
                spec.accessors.append(Accessor(t.id, i, name))
                spec.raw.append(i)
                return spec
        return None
    for i, acc in enumerate(local.accessors):
        t = skip_mods(targ, targ_id)
        targ_id = t.id
        if acc.name is not None:
            found = _match_member(local.types, acc, targ, targ_id, spec)
            if found is None:
                return None
            targ_id = found
            continue
        if i > 0:
            if t.kind != Kind.ARRAY:
                return None
            if not _is_flex(targ, spec.accessors[-1], t) and acc.idx >= t.nelems:
                return None
            targ_id = skip_mods(targ, t.elem).id
        if len(spec.raw) >= _MAX_ACCESS:
            raise Unsatisfiable("access path nests too deep")
        spec.accessors.append(Accessor(targ_id, acc.idx, None))
        spec.raw.append(acc.idx)
        spec.bit_offset += acc.idx * resolve_size(targ, targ_id) * 8
    return spec


def _match_member(
    local: Types, acc: Accessor, targ: Types, targ_id: int, spec: CoreSpec
) -> int | None:
    """Find the member named like `acc` in target composite `targ_id`, looking through
    anonymous members; extends `spec` and returns the member's type id, or None."""
    local_member = local.type(acc.type_id).members[acc.idx]
    t = skip_mods(targ, targ_id)
    if t.kind not in _COMPOSITE:
        return None
    for i, m in enumerate(t.members):
        if len(spec.raw) >= _MAX_ACCESS:
            raise Unsatisfiable("access path nests too deep")
        spec.bit_offset += m.bit_offset
        spec.raw.append(i)
        if not m.name:
            found = _match_member(local, acc, targ, m.type, spec)
            if found is not None:
                return found
        elif m.name == local_member.name:
            if not fields_are_compat(local, local_member.type, targ, m.type):
                return None
            spec.accessors.append(Accessor(t.id, i, m.name))
            return m.type
        spec.bit_offset -= m.bit_offset
        spec.raw.pop()
    return None


def fields_are_compat(local: Types, local_id: int, targ: Types, targ_id: int) -> bool:
    for _ in range(_MAX_DEPTH):
        lt = skip_mods(local, local_id)
        tt = skip_mods(targ, targ_id)
        if lt.kind in _COMPOSITE and tt.kind in _COMPOSITE:
            return True
        if not _kind_compat(lt, tt):
            return False
        if lt.kind in (Kind.PTR, Kind.FLOAT):
            return True
        if lt.kind in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            ln, tn = essential_len(lt.name), essential_len(tt.name)
            return ln == 0 or tn == 0 or (ln == tn and lt.name[:ln] == tt.name[:tn])
        if lt.kind == Kind.INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if lt.kind == Kind.ARRAY:
            local_id, targ_id = lt.elem, tt.elem
            continue
        return False
    raise Unsatisfiable("field types nest too deep")


def types_are_compat(local: Types, local_id: int, targ: Types, targ_id: int, level: int) -> bool:
    """Compatibility for type-based relocations: kinds agree all the way down, ints are not
    old-style bitfields, function prototypes agree parameter by parameter."""
    if not _kind_compat(local.type(local_id), targ.type(targ_id)):
        return False
    for _ in range(_MAX_DEPTH):
        lt = skip_mods(local, local_id)
        tt = skip_mods(targ, targ_id)
        if not _kind_compat(lt, tt):
            return False
        k = lt.kind
        if k in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD):
            return True
        if k == Kind.INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if k == Kind.PTR:
            local_id, targ_id = lt.ref, tt.ref
        elif k == Kind.ARRAY:
            local_id, targ_id = lt.elem, tt.elem
        elif k == Kind.FUNC_PROTO:
            if len(lt.params) != len(tt.params):
                return False
            for (_, lp), (_, tp) in zip(lt.params, tt.params, strict=True):
                if level <= 0:
                    raise Unsatisfiable("function prototypes nest too deep")
                lid, tid = skip_mods(local, lp).id, skip_mods(targ, tp).id
                if not types_are_compat(local, lid, targ, tid, level - 1):
                    return False
            local_id, targ_id = skip_mods(local, lt.ref).id, skip_mods(targ, tt.ref).id
        else:
            return False
    raise Unsatisfiable("types nest too deep")


def types_match(
    local: Types, local_id: int, targ: Types, targ_id: int, behind_ptr: bool, level: int
) -> bool:
    """The stricter TYPE_MATCHES relation: names, sizes, signedness, enumerators and members
    (by name, recursively) must all correspond; behind a pointer a struct may match a fwd."""
    if level <= 0:
        raise Unsatisfiable("types nest too deep")
    for _ in range(_MAX_DEPTH):
        lt = skip_mods(local, local_id)
        tt = skip_mods(targ, targ_id)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk == Kind.UNKN:
            return tk == Kind.UNKN
        if lk == Kind.FWD:
            if behind_ptr and lk != tk:
                return (tk == Kind.STRUCT and not lt.kind_flag) or (
                    tk == Kind.UNION and lt.kind_flag
                )
            return lk == tk and lt.kind_flag == tt.kind_flag
        if lk in _ENUMS:
            return tk in _ENUMS and _enums_match(lt, tt)
        if lk in _COMPOSITE:
            if behind_ptr:
                if lk == tk:
                    return True
                return tk == Kind.FWD and (lk == Kind.UNION) == tt.kind_flag
            return lk == tk and _composites_match(local, lt, targ, tt, behind_ptr, level)
        if lk == Kind.INT:
            return (
                lk == tk
                and lt.size == tt.size
                and (lt.int_encoding & _BTF_INT_SIGNED) == (tt.int_encoding & _BTF_INT_SIGNED)
            )
        if lk == Kind.PTR:
            if lk != tk:
                return False
            behind_ptr = True
            local_id, targ_id = lt.ref, tt.ref
        elif lk == Kind.ARRAY:
            if lk != tk or lt.nelems != tt.nelems:
                return False
            local_id, targ_id = lt.elem, tt.elem
        elif lk == Kind.FUNC_PROTO:
            if lk != tk or len(lt.params) != len(tt.params):
                return False
            for (_, lp), (_, tp) in zip(lt.params, tt.params, strict=True):
                if not types_match(local, lp, targ, tp, behind_ptr, level - 1):
                    return False
            local_id, targ_id = lt.ref, tt.ref
        else:
            return False
    raise Unsatisfiable("types nest too deep")


def _enums_match(lt: Type, tt: Type) -> bool:
    if lt.size != tt.size or len(lt.enum_values) > len(tt.enum_values):
        return False
    return all(any(_names_match(n, m) for m, _ in tt.enum_values) for n, _ in lt.enum_values)


def _composites_match(
    local: Types, lt: Type, targ: Types, tt: Type, behind_ptr: bool, level: int
) -> bool:
    if len(lt.members) > len(tt.members):
        return False
    for lm in lt.members:
        if not any(
            _names_match(lm.name, tm.name)
            and types_match(local, lm.type, targ, tm.type, behind_ptr, level - 1)
            for tm in tt.members
        ):
            return False
    return True


# computing values -------------------------------------------------------------------------
def _field_value(spec: CoreSpec | None, kind: int) -> tuple[int, int, int, bool]:
    """(value, memory size, field type id, validate) of a field relocation on `spec`."""
    if kind == ReloKind.FIELD_EXISTS:
        return (1 if spec is not None else 0), 0, 0, True
    if spec is None:
        raise _Poison
    types = spec.types
    acc = spec.accessors[-1]
    if acc.name is None:  # an array element
        if kind == ReloKind.FIELD_BYTE_OFFSET:
            t = skip_mods(types, acc.type_id)
            while t.kind == Kind.ARRAY:
                t = skip_mods(types, t.elem)
            return spec.bit_offset // 8, resolve_size(types, t.id), t.id, True
        if kind == ReloKind.FIELD_BYTE_SIZE:
            return resolve_size(types, acc.type_id), 0, 0, True
        raise Unsatisfiable(f"{ReloKind(kind).name.lower()} cannot apply to an array element")
    m = types.type(acc.type_id).members[acc.idx]
    mt = skip_mods(types, m.type)
    bit_off, bit_sz = spec.bit_offset, m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size
        if byte_sz <= 0:
            raise Unsatisfiable(f"bitfield {acc.name!r} has a type without a size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise Unsatisfiable(f"bitfield {acc.name!r} cannot be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = resolve_size(types, mt.id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    if kind == ReloKind.FIELD_BYTE_OFFSET:
        return byte_off, (0 if bitfield else byte_sz), (0 if bitfield else mt.id), validate
    if kind == ReloKind.FIELD_BYTE_SIZE:
        return byte_sz, 0, 0, validate
    if kind == ReloKind.FIELD_SIGNED:
        signed = (mt.kind in _ENUMS and _enum_signed(mt)) or (
            mt.kind == Kind.INT and bool(mt.int_encoding & _BTF_INT_SIGNED)
        )
        return int(signed), 0, 0, True
    if kind == ReloKind.FIELD_LSHIFT_U64:
        return 64 - (bit_off + bit_sz - byte_off * 8), 0, 0, validate
    return 64 - bit_sz, 0, 0, True  # FIELD_RSHIFT_U64


def _type_value(spec: CoreSpec | None, kind: int) -> tuple[int, bool]:
    if spec is None:
        return 0, True  # type-based questions about a missing type answer 0
    if kind == ReloKind.TYPE_ID_TARGET:
        return spec.root_type_id, False  # ids move when objects are linked: not checked
    if kind in (ReloKind.TYPE_EXISTS, ReloKind.TYPE_MATCHES):
        return 1, True
    return resolve_size(spec.types, spec.root_type_id), True  # TYPE_SIZE


def _enum_value(spec: CoreSpec | None, kind: int) -> int:
    if kind == ReloKind.ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison
    acc = spec.accessors[0]
    t = spec.types.type(acc.type_id)
    return t.enum_values[acc.idx][1] & _U64  # a negative ENUM value sign-extends, as in C


def calc_relo(local: CoreSpec, targ: CoreSpec | None) -> Result:
    res = Result()
    kind = local.kind
    try:
        if kind in _FIELD_KINDS:
            res.orig, res.orig_sz, orig_type, res.validate = _field_value(local, kind)
            res.new, res.new_sz, new_type, _ = _field_value(targ, kind)
            if res.orig_sz != res.new_sz and targ is not None:
                ot, nt = local.types.type(orig_type), targ.types.type(new_type)
                unsigned_ints = (
                    ot.kind == nt.kind == Kind.INT
                    and ot.int_encoding != _BTF_INT_SIGNED
                    and nt.int_encoding != _BTF_INT_SIGNED
                )
                # A pointer or an unsigned integer reads the same at another width (zero
                # extension); anything else would read a different value.
                res.fail_memsz_adjust = not (ot.kind == nt.kind == Kind.PTR or unsigned_ints)
        elif kind in _TYPE_KINDS:
            res.orig, res.validate = _type_value(local, kind)
            res.new, _ = _type_value(targ, kind)
        else:
            res.orig = _enum_value(local, kind)
            res.new = _enum_value(targ, kind)
    except _Poison:
        res.poison = True
    return res


# one relocation, end to end -----------------------------------------------------------------
class Relocator:
    """Resolves and applies the relocations of one object's programs. Candidate lists are
    cached per local type and narrowed to the candidates that matched, as libbpf does, so a
    type's later relocations are judged against the same kernel type as its first."""

    def __init__(self, local: Types, target: Callable[[], Target]) -> None:
        self.local = local
        self._target_factory = target
        self._target: Target | None = None
        self._cands: dict[int, list[int]] = {}

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = self._target_factory()
        return self._target

    def describe(self, relo: Relo) -> str:
        kind = (
            ReloKind(relo.kind).name.lower()
            if relo.kind in ReloKind._value2member_map_
            else relo.kind
        )
        try:
            t = self.local.type(relo.type_id)
            what = _describe(self.local, t)
            path = _spell_path(self.local, relo)
        except BPFLoadError:
            what, path = f"type {relo.type_id}", ""
        return f"CO-RE {kind} of {what}, access {relo.access!r}{path}, at insn {relo.insn}"

    def resolve(self, relo: Relo) -> Result:
        local = parse_spec(self.local, relo)
        if relo.kind == ReloKind.TYPE_ID_LOCAL:
            return Result(relo.type_id, relo.type_id, validate=False)
        local_t = self.local.type(relo.type_id)
        if not local_t.name:
            raise Unsatisfiable("anonymous types cannot be matched against the kernel")
        cands = self._cands.get(relo.type_id)
        if cands is None:
            cands = self._candidates(local_t)
            self._cands[relo.type_id] = cands
        target = self.target
        best: Result | None = None
        best_spec: CoreSpec | None = None
        kept: list[int] = []
        for cid in cands:
            cand = match_spec(local, target, cid)
            if cand is None:
                continue
            res = calc_relo(local, cand)
            if best is None or best_spec is None:
                best, best_spec = res, cand
            elif cand.bit_offset != best_spec.bit_offset:
                raise Unsatisfiable(
                    f"kernel types {best_spec.root_type_id} and {cid} put the field at "
                    f"different offsets ({best_spec.bit_offset} and {cand.bit_offset} bits)"
                )
            elif (res.poison, res.new) != (best.poison, best.new):
                raise Unsatisfiable(
                    f"kernel types {best_spec.root_type_id} and {cid} resolve it differently "
                    f"({best.new} and {res.new})"
                )
            kept.append(cid)
        if kept:
            self._cands[relo.type_id] = kept
        return best if best is not None else calc_relo(local, None)

    def _candidates(self, local_t: Type) -> list[int]:
        n = essential_len(local_t.name)
        essential = local_t.name[:n]
        target = self.target
        out = []
        for cid in target.named_like(essential):
            t = target.type(cid)
            if _kind_compat(t, local_t) and t.name and essential_len(t.name) == n:
                out.append(cid)
        return out

    def apply(self, insns: bytearray, relos: list[Relo]) -> list[str]:
        """Patch every relocation in place; returns a description of each poisoned one."""
        poisoned = []
        for relo in relos:
            try:
                res = self.resolve(relo)
                if patch_insn(insns, relo.insn, res):
                    poisoned.append(self.describe(relo))
            except BPFLoadError as e:
                raise BPFLoadError(f"{self.describe(relo)}: {e}") from None
        return poisoned


# patching -----------------------------------------------------------------------------------
_SIZES = {0x10: 1, 0x08: 2, 0x00: 4, 0x18: 8}  # BPF_B, BPF_H, BPF_W, BPF_DW
_SIZE_CODES = {v: k for k, v in _SIZES.items()}


def patch_insn(insns: bytearray, idx: int, res: Result) -> bool:
    """Rewrite instruction `idx` with `res`; True if it was poisoned instead."""
    if not 0 <= idx < len(insns) // 8:
        raise Unsatisfiable(f"instruction {idx} is outside the program")
    code, regs, off, imm = _INSN.unpack_from(insns, idx * 8)
    cls = code & 0x07
    ldimm64 = code == 0x18
    if ldimm64 and idx + 1 >= len(insns) // 8:
        raise Unsatisfiable("ld_imm64 is missing its second half")
    poison = res.poison
    if not poison:
        if cls in (0x04, 0x07):  # ALU, ALU64
            if code & 0x08:
                raise Unsatisfiable("the ALU instruction takes a register, not an immediate")
            _expect(res, imm & _U64, "immediate")
            _INSN.pack_into(insns, idx * 8, code, regs, off, _s32(res.new))
        elif cls in (0x01, 0x02, 0x03):  # LDX, ST, STX
            _expect(res, off & _U64, "offset")
            if res.new > 0x7FFF:
                raise Unsatisfiable(f"offset {res.new} does not fit an instruction's 16 bits")
            if res.fail_memsz_adjust:
                poison = True  # the field changed size and type: any width reads it wrong
            else:
                if res.new_sz != res.orig_sz:
                    have = _SIZES.get(code & 0x18)
                    if have != res.orig_sz:
                        raise Unsatisfiable(
                            f"the instruction accesses {have} bytes, not the field's {res.orig_sz}"
                        )
                    size = _SIZE_CODES.get(res.new_sz)
                    if size is None:
                        raise Unsatisfiable(f"no load or store is {res.new_sz} bytes wide")
                    code = (code & 0xE0) | size | cls
                _INSN.pack_into(insns, idx * 8, code, regs, res.new, imm)
        elif ldimm64:
            code2, regs2, off2, imm2 = _INSN.unpack_from(insns, idx * 8 + 8)
            if regs >> 4 or off or code2 or regs2 or off2:
                raise Unsatisfiable("the ld_imm64 instruction has an unexpected form")
            _expect(res, (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32), "64-bit immediate")
            _INSN.pack_into(insns, idx * 8, code, regs, off, _s32(res.new))
            _INSN.pack_into(insns, idx * 8 + 8, 0, 0, 0, _s32(res.new >> 32))
        else:
            raise Unsatisfiable(f"opcode {code:#x} cannot be relocated")
    if poison:
        if ldimm64:
            _INSN.pack_into(insns, idx * 8 + 8, 0x85, 0, 0, POISON_IMM)
        _INSN.pack_into(insns, idx * 8, 0x85, 0, 0, POISON_IMM)
    return poison


def _expect(res: Result, have: int, what: str) -> None:
    if res.validate and have != res.orig & _U64:
        raise Unsatisfiable(
            f"the instruction's {what} is {have}, but the object's own BTF gives {res.orig}"
        )


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


# messages -----------------------------------------------------------------------------------
def _describe(types: Types, t: Type) -> str:
    spelled = {
        Kind.STRUCT: "struct",
        Kind.UNION: "union",
        Kind.ENUM: "enum",
        Kind.ENUM64: "enum",
        Kind.TYPEDEF: "typedef",
        Kind.FWD: "fwd",
    }.get(t.kind, t.kind.name.lower())
    return f"{spelled} {t.name or '(anon)'}"


def _spell_path(types: Types, relo: Relo) -> str:
    """The access string in C terms (`->tgid`, `.comm[2]`), best effort, for messages."""
    if relo.kind in _TYPE_KINDS:
        return ""
    try:
        spec = parse_spec(types, relo)
    except BPFLoadError:
        return ""
    if relo.kind in _ENUM_KINDS:
        return f" ({spec.accessors[0].name})"
    out = "" if spec.raw[0] == 0 else f"[{spec.raw[0]}]"
    for acc in spec.accessors[1:]:
        out += f".{acc.name}" if acc.name is not None else f"[{acc.idx}]"
    return f" ({out.lstrip('.') or 'whole'})"
