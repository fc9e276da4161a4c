"""BPF programs: `ProgramSpec` (what to load) and `Program` (a verified program's fd).

Loading first tries without a verifier log, which is the fast path; only when the kernel refuses
do we reload with a log (64 KiB, growing on ENOSPC up to the kernel's limit) so the error carries
the verifier's reasoning, and, if BTF line_info came with the program, the source line of the
instruction the verifier stopped at.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import re
from typing import Any

from remora.bpf.btf.core import Relo
from remora.bpf.errors import BPFError, BPFSyscallError, VerifierError
from remora.bpf.maps import _obj_name
from remora.bpf.pin import Pinnable, obj_get
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import FD, Closing
from remora.bpf.sys.syscall import bpf, bpf_raw

LOG_START = 64 * 1024
LOG_MAX = (1 << 30) - 1  # the kernel caps log_size at UINT_MAX >> 2
_INSN_LINE = re.compile(r"^(\d+): \(")
# Test runs of these types take only a context (no packet, no repeat): bpf_prog_test_run_*().
_CTX_ONLY = frozenset({t.ProgType.SYSCALL, t.ProgType.RAW_TRACEPOINT})
_ETH_HLEN = 14  # packet test runs need at least an Ethernet header of input


@dataclasses.dataclass
class LineRecord:
    """One line_info entry, resolved to strings, for error reports."""

    insn_off: int  # in instructions, relative to the program start
    file: str
    line: int
    column: int
    text: str


@dataclasses.dataclass
class Reloc:
    """An ld_imm64 at `insn` that needs a map fd: the map itself or a pointer into its value."""

    insn: int
    kind: str  # "map" (BPF_PSEUDO_MAP_FD) or "value" (BPF_PSEUDO_MAP_VALUE + offset)
    target: str  # map name
    offset: int


@dataclasses.dataclass
class ProgramSpec:
    name: str
    type: t.ProgType
    insns: bytes
    section: str = ""
    license: str = "GPL"
    kern_version: int = 0
    expected_attach_type: int = 0
    attach_to: str = ""  # fentry/fexit/tp_btf/lsm target name in kernel BTF
    attach_btf_id: int = 0
    flags: int = 0
    func_info: bytes = b""  # struct bpf_func_info records
    line_info: bytes = b""  # struct bpf_line_info records
    lines: list[LineRecord] = dataclasses.field(default_factory=list)
    maps_used: list[str] = dataclasses.field(default_factory=list)
    relocs: list[Reloc] = dataclasses.field(default_factory=list)
    # (insn, extern name): ksyms and kfuncs, resolved against the running kernel at load
    externs: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    needs: list[str] = dataclasses.field(default_factory=list)  # externs, as inspect shows them
    core_relos: list[Relo] = dataclasses.field(default_factory=list)  # CO-RE, applied at load
    unloadable_reason: str = ""  # why this program cannot load without an attach target

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8


@dataclasses.dataclass(frozen=True)
class TestRunResult:
    __test__ = False

    retval: int
    data_out: bytes
    duration_ns: int  # average per repetition, as the kernel reports it


class Program(Pinnable, Closing):
    """An owned program fd. `verifier_log` is set when a log was requested at load."""

    _kind = "program"

    def __init__(self, fd: FD, name: str, prog_type: t.ProgType, spec: ProgramSpec | None = None):
        self.fd = fd
        self.name = name
        self.type = prog_type
        self.spec = spec
        self.verifier_log = ""
        self.pinned: str | None = None  # the path pin() or open_pinned() used

    @classmethod
    def load(
        cls,
        spec: ProgramSpec,
        btf_fd: int = 0,
        log_level: int = 0,
        fd_array: Any = None,
    ) -> Program:
        """Load `spec`. With log_level > 0 the log is kept even on success."""
        insns = ctypes.create_string_buffer(spec.insns, len(spec.insns))
        lic = ctypes.create_string_buffer(spec.license.encode())
        attr = t.ProgLoadAttr(
            prog_type=int(spec.type),
            insn_cnt=spec.insn_count,
            insns=ctypes.addressof(insns),
            license=ctypes.addressof(lic),
            kern_version=spec.kern_version,
            prog_flags=spec.flags,
            prog_name=_obj_name(spec.name),
            expected_attach_type=spec.expected_attach_type,
            attach_btf_id=spec.attach_btf_id,
        )
        keep: list[Any] = [insns, lic]
        if btf_fd and spec.func_info:
            fi = ctypes.create_string_buffer(spec.func_info, len(spec.func_info))
            li = ctypes.create_string_buffer(spec.line_info, len(spec.line_info) or 1)
            keep += [fi, li]
            attr.prog_btf_fd = btf_fd
            attr.func_info_rec_size = ctypes.sizeof(t.FuncInfo)
            attr.func_info = ctypes.addressof(fi)
            attr.func_info_cnt = len(spec.func_info) // ctypes.sizeof(t.FuncInfo)
            if spec.line_info:
                attr.line_info_rec_size = ctypes.sizeof(t.LineInfo)
                attr.line_info = ctypes.addressof(li)
                attr.line_info_cnt = len(spec.line_info) // ctypes.sizeof(t.LineInfo)
        if fd_array is not None:
            attr.fd_array = ctypes.addressof(fd_array)

        log = ""
        if log_level == 0:
            ret, err = bpf_raw(t.Cmd.PROG_LOAD, attr)
            if ret >= 0:
                return cls(FD(ret, "prog"), spec.name, spec.type, spec)
            if err in (errno.EPERM, errno.ENOMEM, errno.EFAULT, errno.EBADF):
                detail = f"program {spec.name!r}"
                if err == errno.EPERM and spec.expected_attach_type == t.AttachType.TRACE_ITER:
                    detail += "; this kernel refuses iterator programs, even as root"
                elif err == errno.EPERM and spec.type in (t.ProgType.TRACING, t.ProgType.LSM):
                    detail += (
                        "; fentry/fexit/fmod_ret/lsm need BPF trampolines (ftrace direct calls)"
                        " and no kernel lockdown, even as root"
                    )
                raise BPFSyscallError(err, "PROG_LOAD", detail)
        ret, err, log, truncated = _load_with_log(attr, max(log_level, 1))
        if ret < 0:
            source = _failing_source(log, spec.lines)
            raise VerifierError(err, spec.name, log, source, truncated)
        prog = cls(FD(ret, "prog"), spec.name, spec.type, spec)
        prog.verifier_log = log
        return prog

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str]) -> Program:
        fd = FD(obj_get(path), "prog")
        info = prog_info(fd.raw)
        try:
            ptype = t.ProgType(info.type)
        except ValueError:
            fd.close()
            raise BPFError(f"unknown program type {info.type}") from None
        prog = cls(fd, info.name.decode(errors="replace"), ptype)
        prog.pinned = os.fspath(path)
        return prog

    def info(self) -> t.ProgInfo:
        return prog_info(self.fd.raw)

    def test_run(
        self, data: bytes = b"", repeat: int = 1, ctx: bytes | None = None, data_out_size: int = 0
    ) -> TestRunResult:
        """Run the program in the kernel on `data` (BPF_PROG_TEST_RUN).

        For context-only types (syscall, raw tracepoint) `data` is the context: the kernel runs
        them exactly once and takes no packet, so `data_out` is the context as the program left
        it (syscall programs may write it) and the duration is 0.
        """
        if repeat < 1:
            raise ValueError("repeat must be >= 1")
        if self.type in _CTX_ONLY:
            return self._run_on_ctx(ctx if ctx is not None else data, repeat)
        din = ctypes.create_string_buffer(data, len(data) or 1)
        size_out = data_out_size or (len(data) + 512 if data else 0)
        while True:
            dout = ctypes.create_string_buffer(max(size_out, 1))
            attr = t.TestRunAttr(
                prog_fd=self.fd.raw,
                data_size_in=len(data),
                data_size_out=size_out,
                data_in=ctypes.addressof(din) if data else 0,
                data_out=ctypes.addressof(dout) if size_out else 0,
                repeat=repeat,
            )
            cbuf = None
            if ctx is not None:
                cbuf = ctypes.create_string_buffer(ctx, len(ctx))
                attr.ctx_in = ctypes.addressof(cbuf)
                attr.ctx_size_in = len(ctx)
            ret, err = bpf_raw(t.Cmd.PROG_TEST_RUN, attr)
            if ret >= 0:
                n = min(attr.data_size_out, size_out)
                return TestRunResult(attr.retval, dout.raw[:n], attr.duration)
            if err == errno.ENOSPC and attr.data_size_out > size_out:
                size_out = attr.data_size_out
                continue
            if err == errno.EINVAL and len(data) < _ETH_HLEN:
                # The kernel's generic EINVAL hides the usual cause: packet test runs build an
                # skb or xdp_buff, which needs at least an Ethernet header of input.
                raise BPFError(
                    f"program {self.name!r}: PROG_TEST_RUN refused {len(data)} bytes of packet "
                    f"data; {self.type.name.lower()} programs need at least {_ETH_HLEN} "
                    "(an Ethernet header)"
                )
            raise BPFSyscallError(err, "PROG_TEST_RUN", f"program {self.name!r}")

    def _run_on_ctx(self, ctx: bytes, repeat: int) -> TestRunResult:
        if repeat != 1:
            raise ValueError(f"{self.type.name.lower()} programs: the kernel runs once per call")
        cbuf = ctypes.create_string_buffer(ctx, len(ctx) or 1)
        attr = t.TestRunAttr(prog_fd=self.fd.raw)
        if ctx:
            attr.ctx_in = ctypes.addressof(cbuf)
            attr.ctx_size_in = len(ctx)
        ret, err = bpf_raw(t.Cmd.PROG_TEST_RUN, attr)
        if ret < 0:
            raise BPFSyscallError(err, "PROG_TEST_RUN", f"program {self.name!r}")
        out = cbuf.raw[: len(ctx)] if self.type == t.ProgType.SYSCALL else b""
        return TestRunResult(attr.retval, out, 0)

    def close(self) -> None:
        self.fd.close()

    def __repr__(self) -> str:
        return f"Program({self.name!r}, {self.type.name})"


def _load_with_log(attr: t.ProgLoadAttr, level: int) -> tuple[int, int, str, bool]:
    """PROG_LOAD with a log buffer that starts at 64 KiB and grows on ENOSPC."""
    size = LOG_START
    while True:
        buf = ctypes.create_string_buffer(size)
        attr.log_level = level
        attr.log_size = size
        attr.log_buf = ctypes.addressof(buf)
        attr.log_true_size = 0
        ret, err = bpf_raw(t.Cmd.PROG_LOAD, attr)
        log = buf.value.decode(errors="replace")
        if ret >= 0 or err != errno.ENOSPC:
            attr.log_level = attr.log_size = attr.log_buf = 0
            return ret, err, log, False
        if size >= LOG_MAX:
            return ret, err, log, True
        want = attr.log_true_size  # kernels >= 6.4 say exactly how much they needed
        size = min(LOG_MAX, max(size * 4, want + 1 if want else 0))


def _failing_source(log: str, lines: list[LineRecord]) -> str | None:
    """Map the last instruction the verifier printed to its line_info source line."""
    if not lines:
        return None
    idx = None
    for raw in log.splitlines():
        m = _INSN_LINE.match(raw)
        if m:
            idx = int(m.group(1))
    if idx is None:
        return None
    best = None
    for rec in lines:
        if rec.insn_off <= idx and (best is None or rec.insn_off >= best.insn_off):
            best = rec
    if best is None:
        return None
    return f"{best.file}:{best.line}:{best.column}: {best.text.strip()}"


def prog_info(fd: int) -> t.ProgInfo:
    info = t.ProgInfo()
    attr = t.InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(t.Cmd.OBJ_GET_INFO_BY_FD, attr)
    return info
