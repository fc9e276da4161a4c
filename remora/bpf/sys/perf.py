"""perf_event_open(2) and its attr, for tracepoint and uprobe links and perf event readers.

The layout is `struct perf_event_attr` from include/uapi/linux/perf_event.h at
PERF_ATTR_SIZE_VER8 (136 bytes); the kernel accepts any size it knows, and zero-extends. The
flag bits that follow `read_format` are one u64 in C; they are named constants here, since a
ctypes bitfield would hide which bit is which.
"""

from __future__ import annotations

import ctypes
import os
import platform

from remora.bpf.errors import BPFSyscallError
from remora.bpf.sys.fd import FD

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3

# bits of perf_event_attr.flags
ATTR_DISABLED = 1 << 0
ATTR_WATERMARK = 1 << 14

# ioctls on a perf event fd (_IO('$', n) and _IOW('$', 8, __u32))
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408

# record types in a perf ring (perf_event_header.type)
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9

_NR = {"x86_64": 298, "aarch64": 241}
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class PerfEventAttr(ctypes.Structure):
    _fields_ = [
        ("type", u32),
        ("size", u32),
        ("config", u64),
        ("sample_period", u64),  # or sample_freq
        ("sample_type", u64),
        ("read_format", u64),
        ("flags", u64),
        ("wakeup_events", u32),  # or wakeup_watermark (bytes) with ATTR_WATERMARK
        ("bp_type", u32),
        ("config1", u64),  # uprobe_path, kprobe_func
        ("config2", u64),  # probe_offset, kprobe_addr
        ("branch_sample_type", u64),
        ("sample_regs_user", u64),
        ("sample_stack_user", u32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", u64),
        ("aux_watermark", u32),
        ("sample_max_stack", ctypes.c_uint16),
        ("_reserved_2", ctypes.c_uint16),
        ("aux_sample_size", u32),
        ("_reserved_3", u32),
        ("sig_data", u64),
        ("config3", u64),
    ]


assert ctypes.sizeof(PerfEventAttr) == 136


def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, what: str, group_fd: int = -1) -> FD:
    """One perf event fd, owned. `what` names the event in the error."""
    nr = _NR.get(platform.machine())
    if nr is None:
        raise BPFSyscallError(0, "perf_event_open", f"{what}: unsupported machine")
    attr.size = ctypes.sizeof(attr)
    ret = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.byref(attr),
        ctypes.c_int(pid),
        ctypes.c_int(cpu),
        ctypes.c_int(group_fd),
        ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC),
    )
    if ret < 0:
        raise BPFSyscallError(ctypes.get_errno(), "perf_event_open", what)
    return FD(int(ret), "perf_event")


def ioctl(fd: int, request: int, arg: int = 0) -> None:
    _libc.ioctl.restype = ctypes.c_int
    ret = _libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.c_ulong(arg))
    if ret < 0:
        raise BPFSyscallError(
            ctypes.get_errno(), "ioctl", f"perf event fd {fd} request {request:#x}"
        )


def pmu_type(name: str) -> int:
    """A dynamic PMU's type number (uprobe, kprobe) from sysfs."""
    path = f"/sys/bus/event_source/devices/{name}/type"
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError) as e:
        raise BPFSyscallError(
            getattr(e, "errno", 0) or 0, "perf_event_open", f"no {name} PMU ({path})"
        ) from None


def pmu_format_bit(name: str, field: str) -> int:
    """Which config bit a PMU format field uses (uprobe's `retprobe` is "config:0")."""
    path = f"/sys/bus/event_source/devices/{name}/format/{field}"
    with open(path) as f:
        spec = f.read().strip()
    return int(spec.rpartition(":")[2])


def online_cpus() -> list[int]:
    """CPUs to open per-CPU events on: the online ones, as the kernel lists them."""
    with open("/sys/devices/system/cpu/online") as f:
        text = f.read().strip()
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")
