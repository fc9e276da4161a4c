"""Kernel ABI for bpf(2): the `union bpf_attr` members, info structs and enums we use.

Every layout here is transcribed from the kernel UAPI header `include/uapi/linux/bpf.h` (the
member names match the header so a reader can diff them); nothing else in remora.bpf may define
a kernel struct. Each attr struct is one anonymous member of `union bpf_attr`; the kernel accepts
any attr size up to its own and requires unknown trailing bytes to be zero, so passing only the
member we fill is both correct and forward compatible. `__aligned_u64` pointers are plain
`c_uint64` holding addresses, which also gives them their natural 8-byte alignment.
"""

from __future__ import annotations

import ctypes
import enum

from remora.bpf.sys.attr import Attr

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8


class Cmd(enum.IntEnum):
    """`enum bpf_cmd` (BPF_PROG_RUN is an alias of BPF_PROG_TEST_RUN and takes no number)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32
    ITER_CREATE = 33
    LINK_DETACH = 34


class MapType(enum.IntEnum):
    """`enum bpf_map_type`."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


class ProgType(enum.IntEnum):
    """`enum bpf_prog_type`."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class AttachType(enum.IntEnum):
    """`enum bpf_attach_type`."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53


# Update flags (`BPF_ANY` ... in linux/bpf.h).
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# Map creation flags (linux/bpf.h, "Flags for BPF_MAP_CREATE command").
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_MMAPABLE = 1 << 10
BPF_F_INNER_MAP = 1 << 12

# Program load flags.
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5

# insn[0].src_reg of ld_imm64 and src_reg of calls (linux/bpf.h "BPF_PSEUDO_*").
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2


class MapCreateAttr(Attr):
    """`union bpf_attr`, BPF_MAP_CREATE member."""

    _fields_ = [
        ("map_type", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("inner_map_fd", u32),
        ("numa_node", u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", u32),
        ("btf_fd", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("map_extra", u64),
    ]


class MapElemAttr(Attr):
    """`union bpf_attr`, BPF_MAP_*_ELEM member (`value` doubles as `next_key`)."""

    _fields_ = [
        ("map_fd", u32),
        ("key", u64),
        ("value", u64),
        ("flags", u64),
    ]


class MapBatchAttr(Attr):
    """`union bpf_attr`, `batch` member used by BPF_MAP_*_BATCH."""

    _fields_ = [
        ("in_batch", u64),
        ("out_batch", u64),
        ("keys", u64),
        ("values", u64),
        ("count", u32),
        ("map_fd", u32),
        ("elem_flags", u64),
        ("flags", u64),
    ]


class ProgLoadAttr(Attr):
    """`union bpf_attr`, BPF_PROG_LOAD member."""

    _fields_ = [
        ("prog_type", u32),
        ("insn_cnt", u32),
        ("insns", u64),
        ("license", u64),
        ("log_level", u32),
        ("log_size", u32),
        ("log_buf", u64),
        ("kern_version", u32),
        ("prog_flags", u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", u32),
        ("expected_attach_type", u32),
        ("prog_btf_fd", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("func_info_cnt", u32),
        ("line_info_rec_size", u32),
        ("line_info", u64),
        ("line_info_cnt", u32),
        ("attach_btf_id", u32),
        ("attach_prog_fd", u32),  # union with attach_btf_obj_fd
        ("core_relo_cnt", u32),
        ("fd_array", u64),
        ("core_relos", u64),
        ("core_relo_rec_size", u32),
        ("log_true_size", u32),
    ]


class ObjAttr(Attr):
    """`union bpf_attr`, BPF_OBJ_PIN / BPF_OBJ_GET member."""

    _fields_ = [("pathname", u64), ("bpf_fd", u32), ("file_flags", u32)]


class TestRunAttr(Attr):
    """`union bpf_attr`, `test` member used by BPF_PROG_TEST_RUN."""

    __test__ = False  # not a pytest class
    _fields_ = [
        ("prog_fd", u32),
        ("retval", u32),
        ("data_size_in", u32),
        ("data_size_out", u32),
        ("data_in", u64),
        ("data_out", u64),
        ("repeat", u32),
        ("duration", u32),
        ("ctx_size_in", u32),
        ("ctx_size_out", u32),
        ("ctx_in", u64),
        ("ctx_out", u64),
        ("flags", u32),
        ("cpu", u32),
        ("batch_size", u32),
    ]


class InfoAttr(Attr):
    """`union bpf_attr`, `info` member used by BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [("bpf_fd", u32), ("info_len", u32), ("info", u64)]


class BtfLoadAttr(Attr):
    """`union bpf_attr`, BPF_BTF_LOAD member."""

    _fields_ = [
        ("btf", u64),
        ("btf_log_buf", u64),
        ("btf_size", u32),
        ("btf_log_size", u32),
        ("btf_log_level", u32),
        ("btf_log_true_size", u32),
    ]


class LinkCreateAttr(Attr):
    """`union bpf_attr`, `link_create` member.

    After `flags` the header has a union whose layout depends on the attach type; it is two
    u64 words here, filled per type by `remora.bpf.link`: perf_event {bpf_cookie}, iterators
    {iter_info, iter_info_len}, tcx {relative_fd, expected_revision}, tracing {target_btf_id,
    cookie}.
    """

    _fields_ = [
        ("prog_fd", u32),
        ("target_fd", u32),  # union with target_ifindex
        ("attach_type", u32),
        ("flags", u32),
        ("union_word0", u64),
        ("union_word1", u64),
    ]


class LinkUpdateAttr(Attr):
    """`union bpf_attr`, `link_update` member."""

    _fields_ = [("link_fd", u32), ("new_prog_fd", u32), ("flags", u32), ("old_prog_fd", u32)]


class LinkDetachAttr(Attr):
    """`union bpf_attr`, `link_detach` member."""

    _fields_ = [("link_fd", u32)]


class RawTracepointOpenAttr(Attr):
    """`union bpf_attr`, `raw_tracepoint` member (name 0 for tp_btf: the id came at load)."""

    _fields_ = [("name", u64), ("prog_fd", u32), ("_pad", u32), ("cookie", u64)]


class ProgAttachAttr(Attr):
    """`union bpf_attr`, BPF_PROG_ATTACH / BPF_PROG_DETACH member."""

    _fields_ = [
        ("target_fd", u32),
        ("attach_bpf_fd", u32),
        ("attach_type", u32),
        ("attach_flags", u32),
        ("replace_bpf_fd", u32),
    ]


class IterCreateAttr(Attr):
    """`union bpf_attr`, `iter_create` member."""

    _fields_ = [("link_fd", u32), ("flags", u32)]


class LinkType(enum.IntEnum):
    """`enum bpf_link_type`."""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14


class LinkInfo(ctypes.Structure):
    """`struct bpf_link_info`: the common head, and the per-type union as raw words."""

    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("prog_id", u32),
        ("_pad", u32),
        ("union", u64 * 8),
    ]


# XDP attach flags (linux/if_link.h XDP_FLAGS_*).
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3


class MapInfo(ctypes.Structure):
    """`struct bpf_map_info` (aligned(8))."""

    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("btf_id", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("_pad", u32),
        ("map_extra", u64),
    ]


class ProgInfo(ctypes.Structure):
    """`struct bpf_prog_info`, up to `attach_btf_id` (aligned(8))."""

    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("tag", u8 * BPF_TAG_SIZE),
        ("jited_prog_len", u32),
        ("xlated_prog_len", u32),
        ("jited_prog_insns", u64),
        ("xlated_prog_insns", u64),
        ("load_time", u64),
        ("created_by_uid", u32),
        ("nr_map_ids", u32),
        ("map_ids", u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", u32),
        ("gpl_compatible", u32),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("nr_jited_ksyms", u32),
        ("nr_jited_func_lens", u32),
        ("jited_ksyms", u64),
        ("jited_func_lens", u64),
        ("btf_id", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("nr_func_info", u32),
        ("nr_line_info", u32),
        ("line_info", u64),
        ("jited_line_info", u64),
        ("nr_jited_line_info", u32),
        ("line_info_rec_size", u32),
        ("jited_line_info_rec_size", u32),
        ("nr_prog_tags", u32),
        ("prog_tags", u64),
        ("run_time_ns", u64),
        ("run_cnt", u64),
        ("recursion_misses", u64),
        ("verified_insns", u32),
        ("attach_btf_obj_id", u32),
        ("attach_btf_id", u32),
        ("_pad", u32),
    ]


class Insn(ctypes.Structure):
    """`struct bpf_insn`: opcode, dst_reg:4, src_reg:4, off, imm (little-endian bitfields)."""

    _fields_ = [("code", u8), ("regs", u8), ("off", ctypes.c_int16), ("imm", ctypes.c_int32)]


class FuncInfo(ctypes.Structure):
    """`struct bpf_func_info`."""

    _fields_ = [("insn_off", u32), ("type_id", u32)]


class LineInfo(ctypes.Structure):
    """`struct bpf_line_info` (line_col packs line << 10 | column)."""

    _fields_ = [("insn_off", u32), ("file_name_off", u32), ("line_off", u32), ("line_col", u32)]


assert ctypes.sizeof(MapInfo) == 88
assert ctypes.sizeof(Insn) == 8
