"""Find reference cycles that no C type can have, so every later walk of the types terminates.

Self-reference is normal in BTF: `struct node { struct node *next; }` is a cycle through a
pointer to a struct. What C cannot express is a cycle that never passes through a pointer to a
struct or union: a pointer to itself, an array of pointers to that same array, a typedef of a
const of that typedef, a struct that contains itself by value. The kernel refuses those at
BPF_BTF_LOAD ("Loop detected"); we refuse them when the object is read, naming the type ids,
because code that follows references (sizes, C spellings, ctypes checks, inspect output) would
otherwise recurse forever on a crafted object.

The walk follows the kernel's resolve rules: once a pointer has been crossed, a struct or union
is where the chain ends (its size is not needed to size the pointer); before that, struct and
union members are followed too, since a by-value member needs its own size. Each type is visited
at most once in each of those two modes, so the check is linear in the number of references.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from remora.bpf.btf.types import Kind, Type
from remora.bpf.errors import BPFLoadError

_BY_VALUE = 0
_BEHIND_POINTER = 1
_ON_PATH, _DONE = 1, 2  # 0: not reached yet


def _edges(types: Sequence[Type], tid: int, mode: int) -> Iterator[tuple[int, int]]:
    """The (type id, mode) pairs that resolving `tid` in `mode` needs first."""
    t = types[tid]
    kind = t.kind
    if kind == Kind.PTR:
        yield t.ref, _BEHIND_POINTER
    elif kind in (Kind.STRUCT, Kind.UNION):
        if mode == _BY_VALUE:
            for m in t.members:
                yield m.type, _BY_VALUE
    elif kind == Kind.ARRAY:
        yield t.elem, mode
        yield t.index, mode
    elif kind == Kind.FUNC_PROTO:
        yield t.ref, mode
        for _, ptype in t.params:
            yield ptype, mode
    elif kind == Kind.DATASEC:
        for si in t.secinfo:
            yield si.type, _BY_VALUE
    elif kind in (Kind.VAR, Kind.FUNC, Kind.DECL_TAG):
        yield t.ref, _BY_VALUE
    elif kind in (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG):
        yield t.ref, mode


def check_acyclic(types: Sequence[Type]) -> None:
    """Raise BPFLoadError naming the ids of the first impossible cycle; `types[0]` is void."""
    state = bytearray(2 * len(types))
    for root in range(1, len(types)):
        if state[2 * root]:
            continue
        path: list[tuple[int, int]] = [(root, _BY_VALUE)]
        stack = [_edges(types, root, _BY_VALUE)]
        state[2 * root] = _ON_PATH
        while stack:
            step = next(stack[-1], None)
            if step is None:
                tid, mode = path.pop()
                stack.pop()
                state[2 * tid + mode] = _DONE
                continue
            tid, mode = step
            if tid == 0:
                continue
            seen = state[2 * tid + mode]
            if seen == _DONE:
                continue
            if seen == _ON_PATH:
                start = path.index((tid, mode))
                loop = [i for i, _ in path[start:]] + [tid]
                spelled = " -> ".join(f"{i} ({types[i].kind.name})" for i in loop)
                raise BPFLoadError(
                    f"BTF: reference cycle {spelled}; only a pointer to a struct or union "
                    "may lead back to a type"
                )
            state[2 * tid + mode] = _ON_PATH
            path.append((tid, mode))
            stack.append(_edges(types, tid, mode))
