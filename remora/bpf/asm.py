"""A tiny eBPF instruction builder: enough to write test programs and to patch relocations.

Encoding follows the kernel's `struct bpf_insn` (opcode byte, dst/src nibbles, s16 offset, s32
immediate, little-endian). ld_imm64 occupies two slots; its second slot carries the high 32 bits.
"""

from __future__ import annotations

import dataclasses
import struct

_INSN = struct.Struct("<BBhi")
INSN_SIZE = 8

# Classes (low 3 bits of the opcode).
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# Sizes and modes for loads/stores.
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
IMM, MEM = 0x00, 0x60
# ALU operations and sources.
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0,
)  # fmt: skip
K, X = 0x00, 0x08
# Jump operations.
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0,
)  # fmt: skip

LD_IMM64 = LD | DW | IMM  # 0x18
CALL_OP = JMP | CALL  # 0x85


@dataclasses.dataclass(slots=True)
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        return _INSN.pack(self.code, (self.src << 4) | self.dst, self.off, self.imm)

    @classmethod
    def decode(cls, data: bytes | memoryview, offset: int = 0) -> Insn:
        code, regs, off, imm = _INSN.unpack_from(data, offset)
        return cls(code, regs & 0xF, regs >> 4, off, imm)


def assemble(insns: list[Insn]) -> bytes:
    return b"".join(i.encode() for i in insns)


def mov64_imm(dst: int, imm: int) -> Insn:
    return Insn(ALU64 | MOV | K, dst, 0, 0, imm)


def mov64_reg(dst: int, src: int) -> Insn:
    return Insn(ALU64 | MOV | X, dst, src)


def alu64_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(ALU64 | op | K, dst, 0, 0, imm)


def alu64_reg(op: int, dst: int, src: int) -> Insn:
    return Insn(ALU64 | op | X, dst, src)


def ld_imm64(dst: int, imm: int, src: int = 0) -> list[Insn]:
    lo = imm & 0xFFFFFFFF
    hi = (imm >> 32) & 0xFFFFFFFF
    return [
        Insn(LD_IMM64, dst, src, 0, lo - (1 << 32) if lo >= 1 << 31 else lo),
        Insn(0, 0, 0, 0, hi - (1 << 32) if hi >= 1 << 31 else hi),
    ]


def ld_map_fd(dst: int, fd: int) -> list[Insn]:
    """Load a map pointer: ld_imm64 with src_reg = BPF_PSEUDO_MAP_FD."""
    return ld_imm64(dst, fd, src=1)


def ldx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(LDX | size | MEM, dst, src, off)


def stx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(STX | size | MEM, dst, src, off)


def st_mem(size: int, dst: int, off: int, imm: int) -> Insn:
    return Insn(ST | size | MEM, dst, 0, off, imm)


def jmp_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(JMP | op | K, dst, 0, off, imm)


def jmp_reg(op: int, dst: int, src: int, off: int) -> Insn:
    return Insn(JMP | op | X, dst, src, off)


def call(helper: int) -> Insn:
    return Insn(CALL_OP, 0, 0, 0, helper)


def exit_() -> Insn:
    return Insn(JMP | EXIT)


def return_imm(value: int) -> list[Insn]:
    return [mov64_imm(0, value), exit_()]
