"""Kernel symbols and kfuncs, resolved against the running kernel as programs load."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from remora.bpf.btf.kernel import kernel_btf
from remora.bpf.btf.types import Kind
from remora.bpf.collection import Collection
from remora.bpf.elf import read_elf
from remora.bpf.errors import BPFLoadError, VerifierError
from remora.bpf.ksyms import kallsyms, resolve
from remora.bpf.sys.types import BPF_PSEUDO_BTF_ID

pytestmark = pytest.mark.usefixtures("bpf_root")


def test_an_untyped_ksym_is_its_kallsyms_address(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["externs"], programs=["addr_lo"]) as c:
        low = c.programs["addr_lo"].test_run().retval
    assert low == kallsyms()["__x64_sys_bpf"] & 0xFFFFFFFF
    assert low != 0


def test_kfunc_calls_reach_the_kernel(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["externs"], programs=["own_task", "guarded_kfunc"]) as c:
        # bpf_task_from_pid() found this process, and bpf_task_release() let it go
        assert c.programs["own_task"].test_run().retval == 1
        # the missing weak kfunc reads as absent, and its poisoned call is never reached
        assert c.programs["guarded_kfunc"].test_run().retval == 2


def test_a_typed_ksym_carries_its_vmlinux_btf_id(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["externs"])
    prog = spec.programs["percpu"]
    insns = bytearray(prog.insns)
    resolve(insns, prog.externs, spec.externs)
    ((insn, _),) = prog.externs
    _, regs, _, imm = struct.unpack_from("<BBhi", insns, insn * 8)
    assert regs >> 4 == BPF_PSEUDO_BTF_ID
    assert imm == kernel_btf().find("bpf_prog_active", Kind.VAR)
    # The kernel then needs the variable's address. A kernel built without
    # CONFIG_KALLSYMS_ALL (this one) lists no data symbols, and the verifier says so.
    if "bpf_prog_active" in kallsyms():
        with Collection.load(bpf_objs["externs"], programs=["percpu"]) as c:
            assert c.programs["percpu"].test_run().retval in (0, 1)
    else:
        with pytest.raises(VerifierError, match="bpf_prog_active"):
            Collection.load(bpf_objs["externs"], programs=["percpu"])


def test_a_strong_kfunc_the_kernel_lacks_names_it_and_the_program(
    bpf_objs: dict[str, Path],
) -> None:
    with pytest.raises(BPFLoadError) as ei:
        Collection.load(bpf_objs["unresolved"], programs=["needs_kfunc"])
    assert "program 'needs_kfunc' cannot be loaded" in str(ei.value)
    assert "kfunc 'bpf_remora_no_such_kfunc' is not in the running kernel's BTF" in str(ei.value)


def test_a_whole_load_names_the_first_program_that_cannot_load(
    bpf_objs: dict[str, Path],
) -> None:
    with pytest.raises(BPFLoadError, match=r"program '(needs_config|calls_elsewhere)'"):
        Collection.load(bpf_objs["unresolved"])


def test_a_kfunc_declared_against_the_kernels_prototype_is_refused(
    bpf_objs: dict[str, Path],
) -> None:
    with pytest.raises(BPFLoadError) as ei:
        Collection.load(bpf_objs["unresolved"], programs=["wrong_prototype"])
    message = str(ei.value)
    assert "program 'wrong_prototype' cannot be loaded" in message
    assert "kfunc 'bpf_cgroup_release': its prototype here" in message
    assert "is not compatible with the kernel's" in message
