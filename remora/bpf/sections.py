"""Program section names -> program type, expected attach type and load flags.

These are libbpf's SEC() conventions (documented in the kernel's libbpf "Program Types and ELF
Sections" page): a section is either an exact name ("xdp", "sockops") or a prefix followed by
"/" and a target ("fentry/<func>", "tracepoint/<cat>/<name>"). The table is data so that
`remora bpf inspect` and the loader agree by construction.
"""

from __future__ import annotations

import dataclasses

from remora.bpf.sys.types import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS, AttachType, ProgType

P = ProgType
A = AttachType


@dataclasses.dataclass(frozen=True)
class SectionDef:
    prefix: str
    prog_type: ProgType
    attach_type: AttachType | None = None
    flags: int = 0
    # "kernel": the part after "/" names a kernel BTF function/type to find an attach_btf_id for.
    # "prog": needs a target program fd (freplace); only an attach can provide it.
    # "struct_ops": loads only as a member of a struct_ops map.
    target: str = ""
    btf_prefix: str = ""  # prepended to the target name when looking it up in kernel BTF


def _d(prefix: str, ptype: ProgType, atype: AttachType | None = None, **kw: object) -> SectionDef:
    return SectionDef(prefix, ptype, atype, **kw)  # type: ignore[arg-type]


# Order matters: longer prefixes before shorter ones that they start with.
SECTION_DEFS: tuple[SectionDef, ...] = (
    _d("socket", P.SOCKET_FILTER),
    _d("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE),
    _d("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT),
    _d("kprobe.multi", P.KPROBE, A.TRACE_KPROBE_MULTI),
    _d("kretprobe.multi", P.KPROBE, A.TRACE_KPROBE_MULTI),
    _d("uprobe.multi.s", P.KPROBE, A.TRACE_UPROBE_MULTI, flags=BPF_F_SLEEPABLE),
    _d("uprobe.multi", P.KPROBE, A.TRACE_UPROBE_MULTI),
    _d("uretprobe.multi.s", P.KPROBE, A.TRACE_UPROBE_MULTI, flags=BPF_F_SLEEPABLE),
    _d("uretprobe.multi", P.KPROBE, A.TRACE_UPROBE_MULTI),
    _d("kprobe", P.KPROBE),
    _d("kretprobe", P.KPROBE),
    _d("ksyscall", P.KPROBE),
    _d("kretsyscall", P.KPROBE),
    _d("uprobe.s", P.KPROBE, flags=BPF_F_SLEEPABLE),
    _d("uprobe", P.KPROBE),
    _d("uretprobe.s", P.KPROBE, flags=BPF_F_SLEEPABLE),
    _d("uretprobe", P.KPROBE),
    _d("usdt", P.KPROBE),
    _d("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    _d("tc/egress", P.SCHED_CLS, A.TCX_EGRESS),
    _d("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    _d("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS),
    _d("tc", P.SCHED_CLS),
    _d("classifier", P.SCHED_CLS),
    _d("action", P.SCHED_ACT),
    _d("tracepoint", P.TRACEPOINT),
    _d("tp", P.TRACEPOINT),
    _d("raw_tracepoint.w", P.RAW_TRACEPOINT_WRITABLE),
    _d("raw_tp.w", P.RAW_TRACEPOINT_WRITABLE),
    _d("raw_tracepoint", P.RAW_TRACEPOINT),
    _d("raw_tp", P.RAW_TRACEPOINT),
    _d("tp_btf", P.TRACING, A.TRACE_RAW_TP, target="kernel", btf_prefix="btf_trace_"),
    _d("fentry.s", P.TRACING, A.TRACE_FENTRY, flags=BPF_F_SLEEPABLE, target="kernel"),
    _d("fentry", P.TRACING, A.TRACE_FENTRY, target="kernel"),
    _d("fmod_ret.s", P.TRACING, A.MODIFY_RETURN, flags=BPF_F_SLEEPABLE, target="kernel"),
    _d("fmod_ret", P.TRACING, A.MODIFY_RETURN, target="kernel"),
    _d("fexit.s", P.TRACING, A.TRACE_FEXIT, flags=BPF_F_SLEEPABLE, target="kernel"),
    _d("fexit", P.TRACING, A.TRACE_FEXIT, target="kernel"),
    _d("freplace", P.EXT, target="prog"),
    _d("lsm.s", P.LSM, A.LSM_MAC, flags=BPF_F_SLEEPABLE, target="kernel", btf_prefix="bpf_lsm_"),
    _d("lsm_cgroup", P.LSM, A.LSM_CGROUP, target="kernel", btf_prefix="bpf_lsm_"),
    _d("lsm", P.LSM, A.LSM_MAC, target="kernel", btf_prefix="bpf_lsm_"),
    _d(
        "iter.s",
        P.TRACING,
        A.TRACE_ITER,
        flags=BPF_F_SLEEPABLE,
        target="kernel",
        btf_prefix="bpf_iter_",
    ),
    _d("iter", P.TRACING, A.TRACE_ITER, target="kernel", btf_prefix="bpf_iter_"),
    _d("syscall", P.SYSCALL, flags=BPF_F_SLEEPABLE),
    _d("struct_ops.s", P.STRUCT_OPS, flags=BPF_F_SLEEPABLE, target="struct_ops"),
    _d("struct_ops", P.STRUCT_OPS, target="struct_ops"),
    _d("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, flags=BPF_F_XDP_HAS_FRAGS),
    _d("xdp/devmap", P.XDP, A.XDP_DEVMAP),
    _d("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, flags=BPF_F_XDP_HAS_FRAGS),
    _d("xdp/cpumap", P.XDP, A.XDP_CPUMAP),
    _d("xdp.frags", P.XDP, A.XDP, flags=BPF_F_XDP_HAS_FRAGS),
    _d("xdp", P.XDP, A.XDP),
    _d("perf_event", P.PERF_EVENT),
    _d("lwt_in", P.LWT_IN),
    _d("lwt_out", P.LWT_OUT),
    _d("lwt_xmit", P.LWT_XMIT),
    _d("lwt_seg6local", P.LWT_SEG6LOCAL),
    _d("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS),
    _d("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER),
    _d("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT),
    _d("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT),
    _d("sk_skb", P.SK_SKB),
    _d("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT),
    _d("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2),
    _d("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR),
    _d("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS),
    _d("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS),
    _d("cgroup/skb", P.CGROUP_SKB),
    _d("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE),
    _d("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND),
    _d("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND),
    _d("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND),
    _d("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND),
    _d("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT),
    _d("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT),
    _d("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT),
    _d("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG),
    _d("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG),
    _d("cgroup/sendmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG),
    _d("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG),
    _d("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG),
    _d("cgroup/recvmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG),
    _d("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME),
    _d("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME),
    _d("cgroup/getpeername_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME),
    _d("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME),
    _d("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME),
    _d("cgroup/getsockname_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME),
    _d("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL),
    _d("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT),
    _d("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT),
    _d("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE),
    _d("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP),
    _d("netfilter", P.NETFILTER, A.NETFILTER),
)


# Old objects (and libbpf < 1.0 "sloppy" matching) used bare prefixes such as "xdp_prog" or
# "socket1"; cilium/ebpf accepts them too. Only these types, which need no target, fall back.
_LEGACY_PREFIXES = ("socket", "xdp", "classifier", "action", "perf_event", "sockops", "sk_msg")


def match_section(name: str) -> tuple[SectionDef, str] | None:
    """The definition for a section name and its target suffix ("" if none), or None."""
    for d in SECTION_DEFS:
        if name == d.prefix:
            return d, ""
        if name.startswith(d.prefix + "/"):
            return d, name[len(d.prefix) + 1 :]
    for prefix in _LEGACY_PREFIXES:
        if name.startswith(prefix):
            return next(d for d in SECTION_DEFS if d.prefix == prefix), ""
    return None
