"""The one place that calls bpf(2).

ctypes' `syscall(SYS_BPF, cmd, attr*, size)` with `use_errno`, so the errno is read atomically
with the failing call; no libbpf is involved. Callers pass the attr Structure for their command
and get the non-negative return value or a `BPFSyscallError`.
"""

from __future__ import annotations

import ctypes
import errno
import os

from remora.bpf.errors import BPFError, BPFSyscallError
from remora.bpf.sys.types import Cmd

# bpf(2)'s number per `uname -m`, from each architecture's syscall table. There is no portable
# way to ask: a wrong guess would run some other syscall with our attr pointer, so an
# architecture missing here is refused rather than defaulted.
_SYS_BPF = {
    "x86_64": 321,
    "i386": 357,
    "i686": 357,
    "aarch64": 280,
    "armv7l": 386,
    "riscv64": 280,
    "loongarch64": 280,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
}


def syscall_number(machine: str) -> int:
    """bpf(2)'s number on `machine`, or a BPFError naming the architecture."""
    number = _SYS_BPF.get(machine)
    if number is None:
        raise BPFError(
            f"bpf(2): unknown CPU architecture {machine!r}: its syscall number is not known "
            f"(known: {', '.join(sorted(_SYS_BPF))})"
        )
    return number


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
MACHINE = os.uname().machine
# -1 on an unknown architecture: importing still works (the proxy imports remora.bpf), and the
# first bpf(2) call raises `syscall_number`'s error.
SYS_BPF = _SYS_BPF.get(MACHINE, -1)

# The hot path: the same libc function without argtypes, called only with prebuilt ctypes
# instances (c_long/c_void_p), which skips per-call argument conversion (~40% faster per op).
fast_syscall = ctypes.CDLL(None, use_errno=True).syscall
fast_syscall.restype = ctypes.c_long
NR_BPF = ctypes.c_long(SYS_BPF)
CMD = {cmd: ctypes.c_long(int(cmd)) for cmd in Cmd}


def bpf(cmd: Cmd, attr: ctypes.Structure, detail: str = "") -> int:
    """Run one bpf(2) command, retrying EINTR/EAGAIN-on-load as the kernel asks us to."""
    if SYS_BPF < 0:
        syscall_number(MACHINE)
    ptr = ctypes.addressof(attr)
    size = ctypes.sizeof(attr)
    for _ in range(5):
        ret: int = _syscall(SYS_BPF, int(cmd), ptr, size)
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err == errno.EINTR or (err == errno.EAGAIN and cmd == Cmd.PROG_LOAD):
            continue
        raise BPFSyscallError(err, cmd.name, detail)
    raise BPFSyscallError(err, cmd.name, detail)


def bpf_raw(cmd: Cmd, attr: ctypes.Structure) -> tuple[int, int]:
    """bpf(2) without raising: returns (ret, errno). For hot loops that treat ENOENT as data."""
    if SYS_BPF < 0:
        syscall_number(MACHINE)
    ret: int = _syscall(SYS_BPF, int(cmd), ctypes.addressof(attr), ctypes.sizeof(attr))
    return ret, (ctypes.get_errno() if ret < 0 else 0)
