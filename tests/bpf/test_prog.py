from __future__ import annotations

import errno
from pathlib import Path

import pytest

from remora.bpf import asm, prog
from remora.bpf.errors import VerifierError
from remora.bpf.maps import Map, MapSpec
from remora.bpf.prog import Program, ProgramSpec
from remora.bpf.sys.types import BPF_F_SLEEPABLE, MapType, ProgType

pytestmark = pytest.mark.usefixtures("bpf_root")


def xdp(insns: list[asm.Insn], name: str = "p") -> ProgramSpec:
    return ProgramSpec(name, ProgType.XDP, asm.assemble(insns))


def test_test_run_returns_retval_data_and_duration() -> None:
    with Program.load(xdp(asm.return_imm(1))) as p:
        res = p.test_run(b"\x01" * 64, repeat=50)
        assert res.retval == 1
        assert res.data_out == b"\x01" * 64
        assert res.duration_ns >= 0
        with pytest.raises(ValueError):
            p.test_run(b"x" * 64, repeat=0)


def test_program_reads_packet_and_updates_map() -> None:
    # r2 = ctx->data; r3 = ctx->data_end; if data+1 > end return 0; r0 = *(u8*)data
    with Map.create(MapSpec("seen", MapType.ARRAY, 4, 8, 1)) as m:
        insns = [
            asm.ldx_mem(asm.W, 2, 1, 0),
            asm.ldx_mem(asm.W, 3, 1, 4),
            asm.mov64_reg(4, 2),
            asm.alu64_imm(asm.ADD, 4, 1),
            asm.jmp_reg(asm.JGT, 4, 3, 13),
            asm.ldx_mem(asm.B, 6, 2, 0),
            # map update of key 0 with the byte we read: *(u32*)(fp-4)=0, *(u64*)(fp-16)=r6
            asm.st_mem(asm.W, 10, -4, 0),
            asm.stx_mem(asm.DW, 10, 6, -16),
            *asm.ld_map_fd(1, m.fd.raw),
            asm.mov64_reg(2, 10),
            asm.alu64_imm(asm.ADD, 2, -4),
            asm.mov64_reg(3, 10),
            asm.alu64_imm(asm.ADD, 3, -16),
            asm.mov64_imm(4, 0),
            asm.call(2),  # bpf_map_update_elem
            *asm.return_imm(2),
            *asm.return_imm(0),
        ]
        with Program.load(xdp(insns)) as p:
            assert p.test_run(b"\x2a" + b"\0" * 63).retval == 2
            assert m[0] == 0x2A


def test_verifier_rejection_shows_last_log_lines() -> None:
    with pytest.raises(VerifierError) as ei:
        Program.load(xdp([asm.exit_()], "noret"))
    err = ei.value
    assert err.errno == errno.EACCES and err.program == "noret"
    assert "R0 !read_ok" in err.log
    assert "R0 !read_ok" in str(err)
    assert not err.truncated


def test_log_starts_small_and_grows_on_enospc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prog, "LOG_START", 64)
    body = [asm.mov64_imm(0, 0)] + [asm.alu64_imm(asm.ADD, 0, 1) for _ in range(200)]
    with Program.load(xdp([*body, asm.exit_()]), log_level=2) as p:
        assert len(p.verifier_log) > 64 * 4
        assert "processed 202 insns" in p.verifier_log


def test_pin_and_open_pinned(bpffs_dir: Path) -> None:
    with Program.load(xdp(asm.return_imm(3), "pinme")) as p:
        p.pin(bpffs_dir / "pinme")
    with Program.open_pinned(bpffs_dir / "pinme") as again:
        assert again.name == "pinme" and again.type == ProgType.XDP
        assert again.test_run(b"\0" * 64).retval == 3
        again.unpin()
        assert not (bpffs_dir / "pinme").exists()
        assert again.test_run(b"\0" * 64).retval == 3


def test_failing_source_maps_insn_to_line() -> None:
    lines = [
        prog.LineRecord(0, "a.c", 3, 1, "int x = 1;"),
        prog.LineRecord(4, "a.c", 9, 5, "  return *p;"),
    ]
    log = "0: (b7) r0 = 0\n5: (61) r0 = *(u32 *)(r1 +0)\ninvalid mem access\n"
    assert prog._failing_source(log, lines) == "a.c:9:5: return *p;"
    assert prog._failing_source("no insns here", lines) is None


def test_context_only_programs_run_on_their_context() -> None:
    """SYSCALL (and raw tracepoint) test runs take the input as ctx, with no data and no repeat:
    the kernel rejects anything else with EINVAL. A syscall program may write its context."""
    insns = [
        asm.ldx_mem(asm.W, 0, 1, 0),
        asm.alu64_imm(asm.ADD, 0, 1),
        asm.stx_mem(asm.W, 1, 0, 0),
        asm.exit_(),
    ]
    spec = ProgramSpec("sys", ProgType.SYSCALL, asm.assemble(insns), flags=BPF_F_SLEEPABLE)
    with Program.load(spec) as p:
        res = p.test_run((41).to_bytes(4, "little"))
        assert res.retval == 42
        assert res.data_out == (42).to_bytes(4, "little")  # the context as the program left it
        with pytest.raises(ValueError, match="runs once"):
            p.test_run(b"\0" * 4, repeat=5)
    raw = ProgramSpec("rtp", ProgType.RAW_TRACEPOINT, asm.assemble(asm.return_imm(7)))
    with Program.load(raw) as p:
        assert p.test_run(bytes(16)).retval == 7
