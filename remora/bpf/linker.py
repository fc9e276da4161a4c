"""Static linking of one program: its entry function plus every subprogram it reaches.

clang emits each function once, in its section; a program that calls `static __noinline` or
global functions needs private copies of them appended after its own code, with call offsets
rewritten to point at the copies (what libbpf calls subprogram relocation). Map and global-data
references become `Reloc` records that the loader fills with fds at load time, and .BTF.ext
func_info/line_info are rebased the same way so the verifier can print source lines. CO-RE
relocations are rebased with them: each copy of a subprogram carries its own, so the loader
patches every copy (libbpf patches the one original before copying, which comes to the same).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import TYPE_CHECKING, Any

from remora.bpf.btf.core import Relo
from remora.bpf.btf.ext import CoreRelo, FuncRec, LineRec
from remora.bpf.errors import BPFLoadError
from remora.bpf.externs import KCONFIG_SEC, Extern
from remora.bpf.prog import LineRecord, ProgramSpec, Reloc
from remora.bpf.sys import types as t

if TYPE_CHECKING:
    from remora.bpf.btf.types import Spec

_INSN = struct.Struct("<BBhi")
CALL = 0x85
LD_IMM64 = 0x18


@dataclasses.dataclass
class Function:
    name: str
    section: int
    start: int  # instruction index inside the section
    count: int
    bind: int  # STB_* of the symbol


@dataclasses.dataclass
class CodeSection:
    index: int
    name: str
    data: bytes
    functions: list[Function]
    relocs: dict[int, Any]  # byte offset -> elf.Symbol
    funcs: list[FuncRec]
    lines: list[LineRec]
    core_relos: list[CoreRelo]

    def function_at(self, insn: int) -> Function:
        for fn in self.functions:
            if fn.start == insn:
                return fn
        raise BPFLoadError(f"{self.name}: call target {insn} is not the start of a function")


def link_program(
    spec: ProgramSpec,
    entry: Function,
    code: dict[int, CodeSection],
    map_syms: dict[tuple[int, int], str],
    data_secs: dict[int, str],
    btf: Spec | None,
    externs: dict[str, Extern],
) -> None:
    order = [entry]
    base = {(entry.section, entry.start): 0}
    total = entry.count
    out = bytearray()
    func_info: list[tuple[int, int]] = []
    line_info: list[tuple[int, int, int, int]] = []
    map_secs = {shndx for shndx, _ in map_syms}
    where = f"program {spec.name!r}"

    def place(fn: Function) -> int:
        nonlocal total
        key = (fn.section, fn.start)
        if key not in base:
            base[key] = total
            total += fn.count
            order.append(fn)
        return base[key]

    i = 0
    while i < len(order):
        fn = order[i]
        cs = code[fn.section]
        b = base[(fn.section, fn.start)]
        chunk = bytearray(cs.data[fn.start * 8 : (fn.start + fn.count) * 8])
        j = 0
        while j < fn.count:
            g = fn.start + j
            opcode, regs, off, imm = _INSN.unpack_from(chunk, j * 8)
            sym = cs.relocs.get(g * 8)
            src = regs >> 4
            if opcode == CALL and (sym is not None or src == t.BPF_PSEUDO_CALL):
                if sym is not None and sym.shndx <= 0:
                    ext = externs.get(sym.name)
                    if ext is None or ext.kind != "kfunc":
                        raise BPFLoadError(
                            f"{where}: call to {sym.name!r}, which this object does not define: "
                            "link the objects that define it first (bpftool gen object), or "
                            "declare a kernel function with __ksym"
                        )
                    # The kernel's BTF id goes in when the program loads (ksyms.resolve).
                    spec.externs.append((b + j, ext.name))
                    regs = (t.BPF_PSEUDO_KFUNC_CALL << 4) | (regs & 0xF)
                    _INSN.pack_into(chunk, j * 8, opcode, regs, 0, 0)
                    j += 1
                    continue
                if sym is not None:
                    if sym.shndx not in code:
                        raise BPFLoadError(
                            f"{where}: call to {sym.name!r}, which is not in a code section"
                        )
                    tsec, tgt = sym.shndx, sym.value // 8 + imm + 1
                else:
                    tsec, tgt = fn.section, g + imm + 1
                tf = code[tsec].function_at(_fn_start(code[tsec], tgt))
                new_imm = place(tf) + (tgt - tf.start) - (b + j) - 1
                _INSN.pack_into(
                    chunk, j * 8, opcode, (t.BPF_PSEUDO_CALL << 4) | (regs & 0xF), off, new_imm
                )
            elif opcode == LD_IMM64:
                if j + 1 >= fn.count:
                    raise BPFLoadError(f"{where}: ld_imm64 at {j} is missing its second half")
                if sym is not None:
                    _, r2, o2, _ = _INSN.unpack_from(chunk, (j + 1) * 8)
                    dst = regs & 0xF
                    if sym.shndx in map_secs:
                        name = map_syms.get((sym.shndx, sym.value + imm))
                        if name is None:
                            raise BPFLoadError(f"{where}: reference to unknown map {sym.name!r}")
                        spec.relocs.append(Reloc(b + j, "map", name, 0))
                        regs = (t.BPF_PSEUDO_MAP_FD << 4) | dst
                        _INSN.pack_into(chunk, j * 8, opcode, regs, off, 0)
                    elif sym.shndx in data_secs:
                        offset = imm + sym.value
                        if not 0 <= offset < 1 << 31:
                            raise BPFLoadError(
                                f"{where}: offset {offset} into {data_secs[sym.shndx]} is invalid"
                            )
                        spec.relocs.append(Reloc(b + j, "value", data_secs[sym.shndx], offset))
                        regs = (t.BPF_PSEUDO_MAP_VALUE << 4) | dst
                        _INSN.pack_into(chunk, j * 8, opcode, regs, off, 0)
                        _INSN.pack_into(chunk, (j + 1) * 8, 0, r2, o2, offset)
                    elif sym.shndx in code:
                        tgt = (sym.value + imm) // 8
                        tf = code[sym.shndx].function_at(tgt)
                        new_imm = place(tf) + (tgt - tf.start) - (b + j) - 1
                        regs = (t.BPF_PSEUDO_FUNC << 4) | dst
                        _INSN.pack_into(chunk, j * 8, opcode, regs, off, new_imm)
                    elif sym.shndx <= 0:
                        ext = externs.get(sym.name)
                        if ext is None:
                            raise BPFLoadError(
                                f"{where}: reference to {sym.name!r}, which this object does not "
                                "define and BTF puts in neither .kconfig nor .ksyms"
                            )
                        spec.externs.append((b + j, ext.name))
                        if ext.kind == "kconfig":
                            offset = ext.offset + imm
                            spec.relocs.append(Reloc(b + j, "value", KCONFIG_SEC, offset))
                            regs = (t.BPF_PSEUDO_MAP_VALUE << 4) | dst
                            _INSN.pack_into(chunk, j * 8, opcode, regs, off, 0)
                            _INSN.pack_into(chunk, (j + 1) * 8, 0, r2, o2, offset)
                    else:
                        raise BPFLoadError(
                            f"{where}: reference to {sym.name!r} in a section that is neither "
                            "a map nor global data"
                        )
                j += 2
                continue
            elif sym is not None:
                raise BPFLoadError(
                    f"{where}: relocation against {sym.name!r} on unsupported opcode {opcode:#x}"
                )
            j += 1
        out += chunk
        lo, hi = fn.start * 8, (fn.start + fn.count) * 8
        for r in cs.core_relos:
            if lo <= r.insn_off < hi:
                if r.insn_off % 8:
                    raise BPFLoadError(
                        f"{where}: CO-RE relocation at byte {r.insn_off} of {cs.name} is not "
                        "on an instruction"
                    )
                if btf is None:  # .BTF.ext is only read next to .BTF
                    raise BPFLoadError(f"{where}: CO-RE relocations without BTF")
                access = btf.strings.get(r.access_str_off)
                at = b + (r.insn_off - lo) // 8
                spec.core_relos.append(Relo(at, r.type_id, access, r.kind))
        func_info += [
            (b + (r.insn_off - lo) // 8, r.type_id) for r in cs.funcs if lo <= r.insn_off < hi
        ]
        line_info += [
            (b + (r.insn_off - lo) // 8, r.file_name_off, r.line_off, r.line_col)
            for r in cs.lines
            if lo <= r.insn_off < hi
        ]
        i += 1
    spec.insns = bytes(out)
    spec.maps_used = sorted({r.target for r in spec.relocs})
    spec.needs = sorted({externs[name].label for _, name in spec.externs})
    # func_info is all or nothing: the kernel wants one record per function.
    if btf is not None and len(func_info) == len(order):
        spec.func_info = b"".join(struct.pack("<II", *f) for f in func_info)
        spec.line_info = b"".join(struct.pack("<IIII", *li) for li in line_info)
        get = btf.strings.get
        spec.lines = [
            LineRecord(off, get(fname), col >> 10, col & 0x3FF, get(text))
            for off, fname, text, col in line_info
        ]


def _fn_start(cs: CodeSection, insn: int) -> int:
    """Calls may land inside a function only in hand-written code; we require a start."""
    if insn < 0 or insn * 8 >= len(cs.data):
        raise BPFLoadError(f"{cs.name}: call target {insn} outside the section")
    return insn
