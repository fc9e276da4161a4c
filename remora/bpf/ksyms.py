"""Resolving `.ksyms` externs and kfunc calls against the running kernel, as a program loads.

- A kfunc call gets the kernel function's BTF id (`BPF_PSEUDO_KFUNC_CALL`).
- A typed kernel variable (or a kfunc named by `bpf_ksym_exists`) gets its BTF id
  (`BPF_PSEUDO_BTF_ID`), so the verifier knows what the pointer points at.
- A `void` one gets its address from `/proc/kallsyms`, as a plain 64-bit constant.

Typed ones are checked against the kernel's declaration first, as libbpf checks them. A weak
extern the kernel lacks becomes zero. A call to a missing weak kfunc becomes a call to
a helper that does not exist: the verifier refuses it only if the program can reach it, which
is what a `bpf_ksym_exists()` guard relies on. libbpf poisons such calls the same way.

Only vmlinux BTF is searched. Kernel modules' BTF (split BTF, passed in `fd_array`) is not
searched yet, so a kfunc or variable defined in a module is reported as missing.
"""

from __future__ import annotations

import functools
import struct

from remora.bpf.btf.kernel import kernel_btf
from remora.bpf.btf.types import Kind, Spec
from remora.bpf.errors import BPFLoadError
from remora.bpf.externs import Extern
from remora.bpf.sys import types as t

KALLSYMS = "/proc/kallsyms"
_INSN = struct.Struct("<BBhi")
_POISON_HELPER = 2002000000  # far above any helper id, so the verifier names it unknown


@functools.cache
def kallsyms() -> dict[str, int]:
    """Symbol -> address. The first address wins when a name repeats (module statics)."""
    out: dict[str, int] = {}
    try:
        with open(KALLSYMS) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    out.setdefault(parts[2], int(parts[0], 16))
    except OSError as e:
        raise BPFLoadError(f"{KALLSYMS}: cannot read: {e.strerror}") from None
    return out


def resolve(
    insns: bytearray,
    uses: list[tuple[int, str]],
    externs: dict[str, Extern],
    local: Spec | None = None,
) -> None:
    """Patch every extern use in place. Raises BPFLoadError naming the first strong extern the
    kernel lacks, or (with the object's BTF, `local`) whose declared type the kernel's
    contradicts."""
    checked: set[str] = set()
    for index, (insn, name) in enumerate(uses):
        ext = externs[name]
        if ext.kind == "kconfig":
            continue  # a map value reference, filled like any other map relocation
        opcode, regs, off, _ = _INSN.unpack_from(insns, insn * 8)
        dst = regs & 0xF
        if ext.kind == "kfunc" and opcode == 0x85:  # a call
            btf_id = _btf_id(ext, Kind.FUNC)
            if btf_id and local is not None and name not in checked:
                _check_compat(local, ext, btf_id)
                checked.add(name)
            if btf_id:
                regs = (t.BPF_PSEUDO_KFUNC_CALL << 4) | dst
                _INSN.pack_into(insns, insn * 8, opcode, regs, 0, btf_id)
            else:
                _INSN.pack_into(insns, insn * 8, opcode, dst, 0, _POISON_HELPER + index)
            continue
        if ext.typed:
            kind = Kind.FUNC if ext.kind == "kfunc" else Kind.VAR
            btf_id = _btf_id(ext, kind)
            if btf_id and local is not None and name not in checked:
                _check_compat(local, ext, btf_id)
                checked.add(name)
            src = t.BPF_PSEUDO_BTF_ID if btf_id else 0
            _ld_imm64(insns, insn, (src << 4) | dst, off, btf_id, 0)
        else:
            addr = kallsyms().get(ext.name)
            if addr is None and not ext.weak:
                raise BPFLoadError(f"ksym {ext.name!r} is not in {KALLSYMS}")
            addr = addr or 0
            _ld_imm64(insns, insn, dst, off, addr & 0xFFFFFFFF, addr >> 32)


def _check_compat(local: Spec, ext: Extern, kernel_id: int) -> None:
    """The object's declaration must agree with the kernel's, by CO-RE's type compatibility
    rules (kinds all the way down, prototypes parameter by parameter), as libbpf demands. A
    kfunc declared with the wrong arguments would otherwise reach the verifier, which reports
    only the register that does not fit."""
    from remora.bpf.btf.core import skip_mods, types_are_compat

    kernel = kernel_btf()
    theirs = skip_mods(kernel, kernel.type(kernel_id).ref)
    if ext.kind == "kfunc":
        ours, what = local.type(ext.btf_type).ref, "prototype"
    else:
        ours, what = skip_mods(local, ext.btf_type).id, "type"
    if not types_are_compat(local, ours, kernel, theirs.id, 32):
        raise BPFLoadError(
            f"{ext.kind} {ext.name!r}: its {what} here ([{ours}] {local.type_name(ours)}) is "
            f"not compatible with the kernel's [{theirs.id}] (a forward-declared struct does "
            "not match the kernel's struct: define it, even empty)"
        )


def _btf_id(ext: Extern, kind: Kind) -> int:
    """The kernel's BTF id for the extern, 0 for a missing weak one."""
    try:
        return kernel_btf().find(ext.name, kind)
    except BPFLoadError:
        if ext.weak:
            return 0
        what = "kfunc" if ext.kind == "kfunc" else "typed ksym"
        raise BPFLoadError(
            f"{what} {ext.name!r} is not in the running kernel's BTF "
            "(kernel modules' BTF is not searched yet)"
        ) from None


def _ld_imm64(insns: bytearray, insn: int, regs: int, off: int, lo: int, hi: int) -> None:
    _INSN.pack_into(insns, insn * 8, 0x18, regs, off, lo - (1 << 32) if lo >= 1 << 31 else lo)
    _, r2, o2, _ = _INSN.unpack_from(insns, insn * 8 + 8)
    _INSN.pack_into(insns, insn * 8 + 8, 0, r2, o2, hi - (1 << 32) if hi >= 1 << 31 else hi)
