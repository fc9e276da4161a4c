"""Externs as the object describes them: found, classified, laid out, and listed per program.

Nothing here needs the kernel; test_kconfig and test_ksyms load what these objects declare.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

from remora.bpf.elf import read_elf
from remora.bpf.externs import KCONFIG_SEC
from remora.bpf.inspect import render_text, summarize
from remora.bpf.sys.types import MapType

PROGS = Path(__file__).parent / "progs"


def test_every_extern_is_classified(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["externs"])
    kinds = {e.name: (e.kind, e.weak) for e in spec.externs.values()}
    assert kinds == {
        "CONFIG_HZ": ("kconfig", False),
        "CONFIG_BPF_SYSCALL": ("kconfig", False),
        "CONFIG_BPF_JIT": ("kconfig", False),
        "CONFIG_LOCALVERSION": ("kconfig", False),
        "LINUX_KERNEL_VERSION": ("kconfig", False),
        "CONFIG_REMORA_NEVER_SET": ("kconfig", True),
        "__x64_sys_bpf": ("ksym", False),
        "bpf_prog_active": ("ksym", False),
        "bpf_task_from_pid": ("kfunc", False),
        "bpf_task_release": ("kfunc", False),
        "bpf_remora_no_such_kfunc": ("kfunc", True),
    }
    assert not spec.externs["__x64_sys_bpf"].typed  # const void: an address from kallsyms
    assert spec.externs["bpf_prog_active"].typed  # const int: a BTF id
    value_kinds = {e.name: e.value_kind for e in spec.externs.values() if e.kind == "kconfig"}
    assert value_kinds == {
        "CONFIG_HZ": "int",
        "CONFIG_BPF_SYSCALL": "bool",
        "CONFIG_BPF_JIT": "tristate",
        "CONFIG_LOCALVERSION": "chars",
        "LINUX_KERNEL_VERSION": "int",
        "CONFIG_REMORA_NEVER_SET": "int",
    }


def test_kconfig_values_share_one_read_only_map(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["externs"])
    kconfig = spec.maps[KCONFIG_SEC]
    assert (kconfig.type, kconfig.key_size, kconfig.max_entries, kconfig.freeze) == (
        MapType.ARRAY,
        4,
        1,
        True,
    )
    placed = sorted(
        (e.offset, e.size, e.name) for e in spec.externs.values() if e.kind == "kconfig"
    )
    for (off, size, name), (next_off, _, _) in itertools.pairwise(placed):
        assert off + size <= next_off, f"{name} overlaps its neighbour"
    for off, size, name in placed:
        align = 1 if spec.externs[name].value_kind == "chars" else size
        assert off % align == 0, f"{name} at {off} is not {align}-aligned"
    assert kconfig.value_size % 8 == 0
    assert kconfig.value_size >= max(off + size for off, size, _ in placed)
    # Programs reach the values through the map, like any global data.
    assert spec.programs["hz"].maps_used == [KCONFIG_SEC]
    assert spec.programs["plain"].maps_used == []


def test_each_program_lists_what_it_needs(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["externs"])
    needs = {n: p.needs for n, p in spec.programs.items()}
    assert needs["hz"] == ["kconfig CONFIG_HZ", "kconfig CONFIG_REMORA_NEVER_SET (weak)"]
    assert needs["own_task"] == ["kfunc bpf_task_from_pid", "kfunc bpf_task_release"]
    assert needs["guarded_kfunc"] == ["kfunc bpf_remora_no_such_kfunc (weak)"]
    assert needs["addr_lo"] == ["ksym __x64_sys_bpf"]
    assert needs["plain"] == []
    text = render_text(summarize(spec))
    assert "needs: kfunc bpf_task_from_pid, kfunc bpf_task_release" in text
    assert re.search(r"bpf_remora_no_such_kfunc +kfunc +weak", text)


def test_an_unlinkable_program_does_not_take_its_neighbours_down(
    bpf_objs: dict[str, Path],
) -> None:
    spec = read_elf(bpf_objs["unresolved"])
    reasons = {n: p.unloadable_reason for n, p in spec.programs.items()}
    assert "call to 'defined_elsewhere'" in reasons["calls_elsewhere"]
    assert "bpftool gen object" in reasons["calls_elsewhere"]
    # Resolvable on paper: what the kernel lacks is found when they load.
    assert reasons["needs_config"] == reasons["needs_kfunc"] == reasons["fine"] == ""
    text = render_text(summarize(spec))
    assert "calls_elsewhere" in text and "fine" in text


def test_externs_without_btf_fail_per_program(tmp_path: Path) -> None:
    """Without BTF an extern cannot be told apart (config value or kernel symbol?)."""
    clang = shutil.which("clang")
    assert clang is not None
    obj = tmp_path / "nobtf.o"
    subprocess.run(
        [
            clang,
            "-O2",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
            str(PROGS / "unresolved.bpf.c"),
            "-o",
            str(obj),
        ],
        check=True,
    )
    spec = read_elf(obj)
    assert spec.externs == {}
    assert "CONFIG_REMORA_NEVER_SET" in spec.programs["needs_config"].unloadable_reason
    assert "neither .kconfig nor .ksyms" in spec.programs["needs_config"].unloadable_reason
    assert spec.programs["fine"].unloadable_reason == ""
