"""Hand BTF to the kernel (BPF_BTF_LOAD), with the kernel's BTF log on failure."""

from __future__ import annotations

import ctypes

from remora.bpf.errors import BPFSyscallError
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import FD
from remora.bpf.sys.syscall import bpf_raw


def load_btf(raw: bytes) -> FD:
    buf = ctypes.create_string_buffer(raw, len(raw))
    attr = t.BtfLoadAttr(btf=ctypes.addressof(buf), btf_size=len(raw))
    ret, err = bpf_raw(t.Cmd.BTF_LOAD, attr)
    if ret >= 0:
        return FD(ret, "btf")
    log = ctypes.create_string_buffer(1 << 16)
    attr.btf_log_buf = ctypes.addressof(log)
    attr.btf_log_size = len(log)
    attr.btf_log_level = 1
    ret, err2 = bpf_raw(t.Cmd.BTF_LOAD, attr)
    if ret >= 0:  # cannot happen in practice; do not leak it if it does
        return FD(ret, "btf")
    tail = " | ".join(log.value.decode(errors="replace").strip().splitlines()[-3:])
    raise BPFSyscallError(err2 or err, "BTF_LOAD", tail)
