"""What the running kernel supports: program types, map types, helpers per program type, and
link types. bpftool's `feature probe` answers the same question.

Each answer comes from asking the kernel directly, by loading a two-instruction program or
creating a one-entry map, and never from the version number. Distribution kernels backport
features and leave others out of their config, so a version tells little. A program type
that cannot be loaded without an attach target (fentry, freplace, lsm, struct_ops) is
reported as "needs a target" rather than guessed. Helpers are probed through the verifier's
words for a helper this program type may not call. Link types are the kernel's own
`enum bpf_link_type`, read from its BTF.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import struct
from typing import Any

from remora.bpf.btf.kernel import VMLINUX
from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFError
from remora.bpf.sys import types as t
from remora.bpf.sys.syscall import bpf_raw

P = t.ProgType
A = t.AttachType
M = t.MapType
_EXIT = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])  # r0 = 0; exit
# Types whose load needs an attach target or extra attributes that a probe cannot invent.
NEEDS_TARGET = frozenset({P.TRACING, P.EXT, P.LSM, P.STRUCT_OPS})
_ATTACH = {
    P.CGROUP_SOCK_ADDR: A.CGROUP_INET4_CONNECT,
    P.SK_LOOKUP: A.SK_LOOKUP,
    P.CGROUP_SOCKOPT: A.CGROUP_GETSOCKOPT,
    P.NETFILTER: A.NETFILTER,
    P.SK_REUSEPORT: A.SK_REUSEPORT_SELECT,
    P.CGROUP_SOCK: A.CGROUP_INET_SOCK_CREATE,
    P.SYSCALL: 0,
}
_PROG_FLAGS = {P.SYSCALL: t.BPF_F_SLEEPABLE}
_NO_HELPER = ("invalid func", "unknown func", "cannot use helper", "program of this type cannot")


@dataclasses.dataclass
class Features:
    program_types: dict[str, str]  # name -> "yes", "no" or "needs a target"
    map_types: dict[str, str]
    helpers: dict[str, list[str]]  # program type -> helper names it may call
    link_types: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _load(prog_type: P, insns: bytes, log: ctypes.Array[ctypes.c_char] | None) -> tuple[int, int]:
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = t.ProgLoadAttr(
        prog_type=int(prog_type),
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(code),
        license=ctypes.addressof(lic),
        expected_attach_type=int(_ATTACH.get(prog_type, 0)),
        prog_flags=_PROG_FLAGS.get(prog_type, 0),
    )
    if log is not None:
        attr.log_level = 1
        attr.log_size = len(log)
        attr.log_buf = ctypes.addressof(log)
    return bpf_raw(t.Cmd.PROG_LOAD, attr)


def probe_program_type(prog_type: P) -> str:
    if prog_type in NEEDS_TARGET:
        return "needs a target"
    fd, _ = _load(prog_type, _EXIT, None)
    if fd >= 0:
        _close(fd)
        return "yes"
    return "no"


def probe_helpers(prog_type: P, helper_names: dict[int, str]) -> list[str]:
    """The helpers a program of this type may call: for each, a program that calls it and
    exits, where any verifier complaint other than "cannot use this helper" means allowed."""
    log = ctypes.create_string_buffer(4096)
    out = []
    for func_id, name in sorted(helper_names.items()):
        call = struct.pack("<BBhi", 0x85, 0, 0, func_id)
        fd, _ = _load(prog_type, call + _EXIT, log)
        if fd >= 0:
            _close(fd)
            out.append(name)
            continue
        text = log.value.decode(errors="replace")
        if not any(words in text for words in _NO_HELPER):
            out.append(name)
    return out


def _map_attrs(map_type: M, btf_fd: int, inner_fd: int) -> t.MapCreateAttr | None:
    attr = t.MapCreateAttr(map_type=int(map_type), key_size=4, value_size=4, max_entries=1)
    if map_type == M.LPM_TRIE:
        attr.key_size, attr.map_flags = 8, t.BPF_F_NO_PREALLOC
    elif map_type in (M.QUEUE, M.STACK, M.BLOOM_FILTER):
        attr.key_size = 0
    elif map_type in (M.RINGBUF, M.USER_RINGBUF):
        attr.key_size = attr.value_size = 0
        attr.max_entries = 4096
    elif map_type in (M.CGROUP_STORAGE, M.PERCPU_CGROUP_STORAGE):
        attr.key_size, attr.max_entries = 8, 0
    elif map_type in (M.SK_STORAGE, M.INODE_STORAGE, M.TASK_STORAGE, M.CGRP_STORAGE):
        attr.map_flags, attr.max_entries = t.BPF_F_NO_PREALLOC, 0
        attr.btf_fd, attr.btf_key_type_id, attr.btf_value_type_id = btf_fd, 1, 1
    elif map_type in (M.ARRAY_OF_MAPS, M.HASH_OF_MAPS):
        attr.inner_map_fd = inner_fd
    elif map_type == M.STACK_TRACE:
        attr.value_size = 8
    elif map_type == M.ARENA:
        attr.key_size = attr.value_size = 0
        attr.map_flags = t.BPF_F_MMAPABLE
    elif map_type == M.STRUCT_OPS:
        return None
    return attr


def probe_map_type(map_type: M, btf_fd: int, inner_fd: int) -> str:
    attr = _map_attrs(map_type, btf_fd, inner_fd)
    if attr is None:
        return "needs a target"
    fd, _ = bpf_raw(t.Cmd.MAP_CREATE, attr)
    if fd >= 0:
        _close(fd)
        return "yes"
    return "no"


def _int_btf() -> bytes:
    """BTF with one type, `int`, for the storage maps (which insist on BTF)."""
    strings = b"\0int\0"
    types = struct.pack("<IIII", 1, Kind.INT << 24, 4, (1 << 24) | 32)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def _close(fd: int) -> None:
    os.close(fd)


def kernel_enum(name: str, path: str = VMLINUX) -> dict[int, str]:
    """One enum of vmlinux BTF (value -> enumerator). This parses vmlinux BTF in full, about
    a second, which only this diagnostic pays."""
    try:
        with open(path, "rb") as f:
            spec = Spec(f.read())
    except OSError as e:
        raise BPFError(f"kernel BTF {path} unavailable: {e.strerror}") from None
    found = spec.by_name(name, Kind.ENUM) or spec.by_name(name, Kind.ENUM64)
    if found is None:
        raise BPFError(f"kernel BTF has no enum {name}")
    return {value: enumerator for enumerator, value in found.enum_values}


def probe(helpers: bool = True) -> Features:
    from remora.bpf.btf.load import load_btf

    prog_types = {p.name.lower(): probe_program_type(p) for p in P if p != P.UNSPEC}
    btf = load_btf(_int_btf())
    inner = t.MapCreateAttr(map_type=int(M.ARRAY), key_size=4, value_size=4, max_entries=1)
    inner_fd, _ = bpf_raw(t.Cmd.MAP_CREATE, inner)
    try:
        map_types = {
            m.name.lower(): probe_map_type(m, btf.raw, max(inner_fd, 0)) for m in M if m != M.UNSPEC
        }
    finally:
        btf.close()
        if inner_fd >= 0:
            _close(inner_fd)
    func_ids = kernel_enum("bpf_func_id")
    names = {
        value: "bpf_" + name.removeprefix("BPF_FUNC_").lower()
        for value, name in func_ids.items()
        if value > 0 and "MAX" not in name
    }
    per_type: dict[str, list[str]] = {}
    if helpers:
        for p in P:
            if prog_types.get(p.name.lower()) == "yes":
                per_type[p.name.lower()] = probe_helpers(p, names)
    links = [
        n.removeprefix("BPF_LINK_TYPE_").lower()
        for v, n in sorted(kernel_enum("bpf_link_type").items())
        if v and "MAX" not in n
    ]
    return Features(prog_types, map_types, per_type, links)


def render(features: Features) -> str:
    out = ["program types:"]
    out += [f"  {name:<28} {state}" for name, state in features.program_types.items()]
    out.append("map types:")
    out += [f"  {name:<28} {state}" for name, state in features.map_types.items()]
    out.append("link types: " + ", ".join(features.link_types))
    for prog_type, names in features.helpers.items():
        out.append(f"helpers for {prog_type} ({len(names)}): " + ", ".join(names))
    return "\n".join(out)
