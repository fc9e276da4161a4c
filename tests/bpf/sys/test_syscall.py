from __future__ import annotations

import ctypes
import errno

import pytest

from remora.bpf.errors import BPFSyscallError, hint_for
from remora.bpf.sys import types as t
from remora.bpf.sys.syscall import bpf


def test_attr_layouts_match_uapi_offsets() -> None:
    # Offsets from include/uapi/linux/bpf.h; a wrong layout silently corrupts every call.
    assert t.MapCreateAttr.map_name.offset == 28
    assert t.MapCreateAttr.map_extra.offset == 64
    assert t.MapElemAttr.key.offset == 8
    assert t.MapBatchAttr.count.offset == 32
    assert t.ProgLoadAttr.prog_name.offset == 48
    assert t.ProgLoadAttr.attach_btf_id.offset == 108
    assert t.ProgLoadAttr.fd_array.offset == 120
    assert t.TestRunAttr.repeat.offset == 32
    assert t.TestRunAttr.ctx_in.offset == 48
    assert ctypes.sizeof(t.MapInfo) == 88


def test_error_carries_errno_command_and_hint(bpf_root: None) -> None:
    attr = t.MapCreateAttr(map_type=int(t.MapType.HASH), key_size=0, value_size=4, max_entries=1)
    with pytest.raises(BPFSyscallError) as ei:
        bpf(t.Cmd.MAP_CREATE, attr, "zero key")
    assert ei.value.errno == errno.EINVAL
    assert ei.value.command == "MAP_CREATE"
    assert "EINVAL" in str(ei.value) and "zero key" in str(ei.value)
    assert ei.value.hint


def test_eperm_hint_names_capability_and_sysctl() -> None:
    hint = hint_for(errno.EPERM)
    assert "CAP_BPF" in hint and "unprivileged_bpf_disabled" in hint


def test_bad_fd_is_ebadf(bpf_root: None) -> None:
    attr = t.MapElemAttr(map_fd=999_999)
    with pytest.raises(BPFSyscallError) as ei:
        bpf(t.Cmd.MAP_FREEZE, attr)
    assert ei.value.errno == errno.EBADF


def test_unknown_architecture_is_refused_not_defaulted(monkeypatch: pytest.MonkeyPatch) -> None:
    from remora.bpf.errors import BPFError
    from remora.bpf.sys import syscall

    assert syscall.syscall_number("x86_64") == 321
    assert syscall.syscall_number("aarch64") == 280
    with pytest.raises(BPFError, match=r"unknown CPU architecture 'mips64'.*known: aarch64"):
        syscall.syscall_number("mips64")
    # As on such a machine: no call reaches the kernel with a guessed number.
    monkeypatch.setattr(syscall, "SYS_BPF", -1)
    monkeypatch.setattr(syscall, "MACHINE", "sparc64")
    attr = t.MapCreateAttr(map_type=int(t.MapType.HASH), key_size=4, value_size=4, max_entries=1)
    for call in (syscall.bpf, syscall.bpf_raw):
        with pytest.raises(BPFError, match="'sparc64'"):
            call(t.Cmd.MAP_CREATE, attr)
