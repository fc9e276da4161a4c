"""Attaching programs: `Link`, one owned attachment, and an `attach_*` function per hook.

Every attachment is a bpf_link where the kernel has one, because a link is an fd. It ends
when its owner closes it or the process dies, so a crash leaves no program attached behind
it, unless the link was pinned on purpose. Tracepoints and uprobes go through a perf event
fd, which the `Link` owns too. `auto_attach` reads the target from the SEC name, as libbpf
does, for the hooks whose SEC names carry one.
"""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Any

from remora.bpf.errors import BPFError
from remora.bpf.maps import Map
from remora.bpf.pin import Pinnable, obj_get
from remora.bpf.prog import Program
from remora.bpf.sys import perf
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import FD, Closing
from remora.bpf.sys.syscall import bpf

A = t.AttachType
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_SO_ATTACH_BPF = 50
_SO_DETACH_BPF = 27
_TRACE_SECTIONS = ("tracepoint/", "tp/")
_RAW_TP_SECTIONS = ("raw_tracepoint/", "raw_tp/", "raw_tracepoint.w/", "raw_tp.w/")
_UPROBE_SECTIONS = ("uprobe/", "uretprobe/", "uprobe.s/", "uretprobe.s/")


class Link(Pinnable, Closing):
    """One attachment. Close it (or leave the `with` block) to detach."""

    _kind = "link"

    def __init__(self, fd: FD, kind: str, target: str, owned: list[FD] | None = None) -> None:
        self.fd = fd
        self.kind = kind  # "xdp", "tcx", "cgroup", "tracepoint", "uprobe", ...
        self.target = target  # what it is attached to, for messages and `remora bpf trace`
        self.name = f"{kind}:{target}"
        self.pinned: str | None = None
        self._owned = owned or []  # perf event fds the link holds on to

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str]) -> Link:
        link = cls(FD(obj_get(path), "link"), "pinned", os.fspath(path))
        link.pinned = os.fspath(path)
        info = link.info()
        known = info.type in t.LinkType._value2member_map_
        link.kind = t.LinkType(info.type).name.lower() if known else f"type {info.type}"
        return link

    def info(self) -> t.LinkInfo:
        info = t.LinkInfo()
        attr = t.InfoAttr(
            bpf_fd=self.fd.raw, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)
        )
        bpf(t.Cmd.OBJ_GET_INFO_BY_FD, attr, f"link {self.name}")
        return info

    def update(self, program: Program, old: Program | None = None) -> None:
        """Swap the program atomically (BPF_LINK_UPDATE); with `old`, only if it is still
        the one attached (BPF_F_REPLACE)."""
        attr = t.LinkUpdateAttr(link_fd=self.fd.raw, new_prog_fd=program.fd.raw)
        if old is not None:
            attr.flags = 1 << 2  # BPF_F_REPLACE
            attr.old_prog_fd = old.fd.raw
        bpf(t.Cmd.LINK_UPDATE, attr, f"link {self.name}")

    def detach(self) -> None:
        """Detach now, even if the link is pinned or shared; the fd stays open, defunct."""
        bpf(t.Cmd.LINK_DETACH, t.LinkDetachAttr(link_fd=self.fd.raw), f"link {self.name}")

    def close(self) -> None:
        self.fd.close()
        for fd in self._owned:
            fd.close()

    def __repr__(self) -> str:
        return f"Link({self.kind!r}, {self.target!r})"


def _link_create(
    program: Program,
    target_fd: int,
    attach_type: int,
    what: str,
    flags: int = 0,
    word0: int = 0,
    word1: int = 0,
) -> FD:
    attr = t.LinkCreateAttr(
        prog_fd=program.fd.raw,
        target_fd=target_fd,
        attach_type=attach_type,
        flags=flags,
        union_word0=word0,
        union_word1=word1,
    )
    return FD(bpf(t.Cmd.LINK_CREATE, attr, f"program {program.name!r} -> {what}"), "link")


def _ifindex(iface: str | int) -> int:
    if isinstance(iface, int):
        return iface
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise BPFError(f"no network interface {iface!r}") from None


# network hooks ------------------------------------------------------------------------------
def attach_xdp(program: Program, iface: str | int, mode: str = "") -> Link:
    """XDP on an interface. `mode` is "generic" (skb), "native" (driver) or "" (the kernel
    picks native where the driver has it)."""
    flags = {"": 0, "generic": t.XDP_FLAGS_SKB_MODE, "native": t.XDP_FLAGS_DRV_MODE}.get(mode)
    if flags is None:
        raise BPFError(f"XDP mode {mode!r}: use 'generic', 'native' or ''")
    fd = _link_create(program, _ifindex(iface), A.XDP, f"xdp on {iface}", flags)
    return Link(fd, "xdp", str(iface))


def attach_tcx(program: Program, iface: str | int, direction: str = "") -> Link:
    """TC on an interface through tcx (kernel 6.6+): `direction` is "ingress" or "egress",
    or "" to take it from the SEC name (tcx/ingress, tc/egress)."""
    attach_type = {"ingress": A.TCX_INGRESS, "egress": A.TCX_EGRESS}.get(direction)
    if attach_type is None:
        spec_type = program.spec.expected_attach_type if program.spec is not None else 0
        if spec_type not in (A.TCX_INGRESS, A.TCX_EGRESS):
            raise BPFError(
                f"program {program.name!r}: say direction='ingress' or 'egress' "
                "(its section does not)"
            )
        attach_type = A(spec_type)
    fd = _link_create(program, _ifindex(iface), attach_type, f"tcx on {iface}")
    return Link(fd, "tcx", f"{iface}/{attach_type.name.removeprefix('TCX_').lower()}")


def attach_cgroup(
    program: Program, cgroup: str | os.PathLike[str], attach_type: int | None = None
) -> Link:
    """A cgroup hook (connect4, sock_create, skb ingress, sockops, ...): the attach type is the
    one the SEC name gave at load unless `attach_type` says otherwise."""
    kind = attach_type
    if kind is None:
        kind = program.spec.expected_attach_type if program.spec is not None else None
    if kind is None:
        raise BPFError(f"program {program.name!r}: give the attach type (no SEC name says it)")
    path = os.fspath(cgroup)
    try:
        cg = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise BPFError(f"cgroup {path}: {e.strerror}") from None
    try:
        fd = _link_create(program, cg, kind, f"cgroup {path}")
    finally:
        os.close(cg)
    return Link(fd, "cgroup", f"{path} ({A(kind).name.lower()})")


def attach_sockmap(program: Program, sockmap: Map, attach_type: int | None = None) -> Link:
    """sk_msg / sk_skb on a sockmap or sockhash (a sockmap link, kernel 6.10+)."""
    kind = attach_type
    if kind is None and program.spec is not None and program.spec.expected_attach_type:
        kind = program.spec.expected_attach_type
    if kind is None:
        raise BPFError(f"program {program.name!r}: give the attach type (stream_verdict, ...)")
    fd = _link_create(program, sockmap.fd.raw, kind, f"map {sockmap.name!r}")
    return Link(fd, "sockmap", f"{sockmap.name} ({A(kind).name.lower()})")


def attach_sk_lookup(program: Program, netns: str = "/proc/self/ns/net") -> Link:
    ns = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = _link_create(program, ns, A.SK_LOOKUP, f"netns {netns}")
    finally:
        os.close(ns)
    return Link(fd, "sk_lookup", netns)


def attach_socket_filter(program: Program, sock: socket.socket) -> None:
    """SO_ATTACH_BPF: the filter lives as long as the socket; detach_socket_filter removes it."""
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_BPF, program.fd.raw)


def detach_socket_filter(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, _SO_DETACH_BPF, 0)


# tracing hooks ------------------------------------------------------------------------------
def tracefs() -> str:
    """Where tracefs is, mounting it at /sys/kernel/tracing when nobody has (root only)."""
    for path in TRACEFS:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", TRACEFS[0].encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise BPFError(f"tracefs is not mounted and cannot be: {os.strerror(err)}")
    return TRACEFS[0]


def tracepoint_id(category: str, name: str) -> int:
    path = os.path.join(tracefs(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read())
    except FileNotFoundError:
        raise BPFError(f"no tracepoint {category}/{name} ({path})") from None


def _perf_link(program: Program, event: FD, kind: str, target: str) -> Link:
    try:
        fd = _link_create(program, event.raw, A.PERF_EVENT, f"{kind} {target}")
    except BaseException:
        event.close()
        raise
    return Link(fd, kind, target, [event])


def attach_tracepoint(program: Program, category: str, name: str = "") -> Link:
    """A tracepoint, as "sched/sched_switch" or ("sched", "sched_switch")."""
    if not name:
        category, _, name = category.partition("/")
    attr = perf.PerfEventAttr(
        type=perf.PERF_TYPE_TRACEPOINT,
        config=tracepoint_id(category, name),
        sample_period=1,
        wakeup_events=1,
    )
    event = perf.perf_event_open(attr, -1, 0, f"tracepoint {category}/{name}")
    return _perf_link(program, event, "tracepoint", f"{category}/{name}")


def attach_raw_tracepoint(program: Program, name: str = "") -> Link:
    """A raw tracepoint by name, or (tp_btf programs) the one their BTF id named at load."""
    buf = ctypes.create_string_buffer(name.encode()) if name else None
    attr = t.RawTracepointOpenAttr(
        name=ctypes.addressof(buf) if buf is not None else 0, prog_fd=program.fd.raw
    )
    what = f"program {program.name!r} -> raw tracepoint {name or '(from BTF)'}"
    fd = FD(bpf(t.Cmd.RAW_TRACEPOINT_OPEN, attr, what), "link")
    target = name or (program.spec.attach_to if program.spec is not None else "")
    return Link(fd, "raw_tracepoint", target.removeprefix("btf_trace_"))


def attach_uprobe(
    program: Program,
    binary: str,
    symbol: str = "",
    offset: int = 0,
    retprobe: bool = False,
    pid: int = -1,
) -> Link:
    """A uprobe (or uretprobe) on `binary` at `symbol` + `offset`, in every process or one."""
    from remora.bpf.uprobe import resolve_binary, symbol_offset

    path = resolve_binary(binary)
    where = offset + (symbol_offset(path, symbol) if symbol else 0)
    if where == 0 and not symbol:
        raise BPFError("a uprobe needs a symbol or a non-zero offset")
    pmu = perf.pmu_type("uprobe")
    config = 1 << perf.pmu_format_bit("uprobe", "retprobe") if retprobe else 0
    path_buf = ctypes.create_string_buffer(path.encode())
    attr = perf.PerfEventAttr(
        type=pmu,
        config=config,
        config1=ctypes.addressof(path_buf),
        config2=where,
        sample_period=1,
        wakeup_events=1,
    )
    label = f"{path}:{symbol or hex(where)}" + (f"+{offset}" if symbol and offset else "")
    kind = "uretprobe" if retprobe else "uprobe"
    event = perf.perf_event_open(attr, pid, 0 if pid == -1 else -1, f"{kind} {label}")
    return _perf_link(program, event, kind, label)


class IterLink(Link):
    """An iterator: each `read()` runs the program over the kernel objects and returns what it
    printed (bpf_seq_printf and friends)."""

    def read(self, limit: int = 64 << 20) -> bytes:
        fd = bpf(t.Cmd.ITER_CREATE, t.IterCreateAttr(link_fd=self.fd.raw), f"iterator {self.name}")
        out = bytearray()
        try:
            while len(out) < limit:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(fd)
        return bytes(out)


def attach_iter(program: Program, map_: Map | None = None) -> IterLink:
    """An iterator program (iter/task, iter/bpf_map_elem with `map_`)."""
    word0 = word1 = 0
    keep: Any = None
    if map_ is not None:
        # union bpf_iter_link_info { struct { __u32 map_fd; } map; ... }
        keep = ctypes.c_uint32(map_.fd.raw)
        word0, word1 = ctypes.addressof(keep), ctypes.sizeof(keep)
    target = program.spec.attach_to.removeprefix("bpf_iter_") if program.spec else "iter"
    fd = _link_create(program, 0, A.TRACE_ITER, f"iterator {target}", word0=word0, word1=word1)
    del keep
    return IterLink(fd, "iter", target + (f" ({map_.name})" if map_ is not None else ""))


# by SEC name ---------------------------------------------------------------------------------
def auto_attach(program: Program) -> Link:
    """Attach where the SEC name says, as libbpf's auto-attach does. Hooks whose SEC names
    carry no target (xdp, tc, cgroup, ...) raise BPFError naming the function that takes
    one."""
    section = program.spec.section if program.spec is not None else ""
    for prefix in _TRACE_SECTIONS:
        if section.startswith(prefix):
            return attach_tracepoint(program, section[len(prefix) :])
    for prefix in _RAW_TP_SECTIONS:
        if section.startswith(prefix):
            return attach_raw_tracepoint(program, section[len(prefix) :])
    if section.startswith("tp_btf/"):
        return attach_raw_tracepoint(program)
    for prefix in _UPROBE_SECTIONS:
        if section.startswith(prefix):
            binary, _, func = section[len(prefix) :].rpartition(":")
            symbol, _, off = func.partition("+")
            if not binary:
                raise BPFError(f"program {program.name!r}: SEC({section!r}) names no binary")
            return attach_uprobe(
                program,
                binary,
                symbol,
                int(off, 0) if off else 0,
                retprobe=prefix.startswith("uretprobe"),
            )
    if section.startswith("iter/"):
        return attach_iter(program)
    hint = _MANUAL.get(section.split("/", 1)[0], "")
    raise BPFError(
        f"program {program.name!r}: SEC({section!r}) names no target to attach to"
        + (f"; use {hint}" if hint else "")
    )


_MANUAL = {
    "xdp": "attach_xdp(prog, iface)",
    "tc": "attach_tcx(prog, iface, 'ingress')",
    "tcx": "attach_tcx(prog, iface)",
    "cgroup": "attach_cgroup(prog, cgroup_path)",
    "cgroup_skb": "attach_cgroup(prog, cgroup_path)",
    "sockops": "attach_cgroup(prog, cgroup_path)",
    "sk_msg": "attach_sockmap(prog, sockmap)",
    "sk_skb": "attach_sockmap(prog, sockmap)",
    "sk_lookup": "attach_sk_lookup(prog)",
    "socket": "attach_socket_filter(prog, sock)",
    "uprobe": "attach_uprobe(prog, binary, symbol)",
    "uretprobe": "attach_uprobe(prog, binary, symbol, retprobe=True)",
}
