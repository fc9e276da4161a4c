from __future__ import annotations

from remora.bpf import asm


def test_encoding_matches_kernel_layout() -> None:
    # BPF_MOV64_IMM(BPF_REG_0, 2) is b7 00 0000 02000000 in struct bpf_insn.
    assert asm.mov64_imm(0, 2).encode() == bytes.fromhex("b700000002000000")
    assert asm.exit_().encode() == bytes.fromhex("9500000000000000")
    # src_reg lives in the high nibble of the register byte.
    assert asm.mov64_reg(1, 10).encode()[1] == 0xA1


def test_ld_imm64_splits_into_two_slots_and_roundtrips() -> None:
    lo, hi = asm.ld_imm64(3, 0xFFFFFFFF_80000001)
    assert (lo.code, lo.dst, hi.code) == (0x18, 3, 0)
    raw = asm.assemble([lo, hi])
    a, b = asm.Insn.decode(raw, 0), asm.Insn.decode(raw, 8)
    assert (a.imm & 0xFFFFFFFF) | ((b.imm & 0xFFFFFFFF) << 32) == 0xFFFFFFFF_80000001
    assert asm.ld_map_fd(1, 5)[0].src == 1
