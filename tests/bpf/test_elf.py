"""ELF reading needs no kernel: these run unprivileged."""

from __future__ import annotations

from pathlib import Path

import pytest

from remora.bpf import asm
from remora.bpf.elf import read_elf, read_elf_bytes
from remora.bpf.errors import BPFError, BPFLoadError
from remora.bpf.sys.types import AttachType, MapType, ProgType


def test_programs_maps_and_license(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["globals"])
    assert spec.license == "Dual BSD/GPL"
    # two programs share the "xdp" section
    assert {n: p.section for n, p in spec.programs.items()} == {
        "xdp_count": "xdp",
        "xdp_magic": "xdp",
        "sock_all": "socket",
    }
    assert spec.programs["xdp_count"].type == ProgType.XDP
    assert spec.programs["sock_all"].type == ProgType.SOCKET_FILTER
    flows = spec.maps["flows"]
    assert (flows.type, flows.key_size, flows.value_size, flows.max_entries) == (
        MapType.HASH,
        8,
        16,
        128,
    )
    assert spec.maps["events"].type == MapType.RINGBUF
    assert spec.maps["events"].max_entries == 4096
    assert spec.programs["xdp_count"].maps_used == [
        ".bss",
        ".data",
        ".data.custom",
        ".rodata",
        ".rodata.custom",
        "counters",
        "flows",
    ]


def test_subprograms_are_appended_with_func_info(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["globals"])
    p = spec.programs["xdp_count"]
    # entry + bump (clang folds add_twice's constant call into bump): two func_info records
    assert len(p.func_info) == 2 * 8
    assert int.from_bytes(p.func_info[:4], "little") == 0
    bump_at = int.from_bytes(p.func_info[8:12], "little")
    calls = [
        i + insn.imm + 1
        for i in range(p.insn_count)
        if (insn := asm.Insn.decode(p.insns, i * 8)).code == 0x85 and insn.src == 1
    ]
    assert calls == [bump_at]  # the relocated call lands on the appended copy of bump()
    assert any("bump(0)" in line.text for line in p.lines)


def test_global_variables_and_data_sections(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["globals"])
    v = spec.variables
    assert {n: (x.map_name, x.size) for n, x in v.items()} == {
        "verdict": (".rodata", 4),
        "magic": (".rodata", 8),
        "hits": (".data", 8),
        "zeroed": (".bss", 8),
        "custom_data": (".data.custom", 4),
        "custom_ro": (".rodata.custom", 4),
    }
    assert v["verdict"].constant and not v["hits"].constant
    assert int.from_bytes(v["verdict"].get(), "little") == 2
    assert int.from_bytes(v["magic"].get(), "little") == 0x1122334455667788
    assert v["verdict"].type_name == "__u32"
    spec.set_constants({"verdict": 1, "magic": b"\xff" * 8})
    assert v["verdict"].get() == b"\x01\0\0\0" and v["magic"].get() == b"\xff" * 8
    with pytest.raises(BPFError, match="no global variable 'nope'"):
        spec.set_constants({"nope": 1})
    with pytest.raises(BPFError, match="does not fit"):
        spec.set_constants({"verdict": 1 << 40})
    rodata = spec.maps[".rodata"]
    assert rodata.freeze and rodata.type == MapType.ARRAY and rodata.max_entries == 1


def test_legacy_maps_section(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["legacy"])
    m = spec.maps
    assert (m["legacy_hash"].type, m["legacy_hash"].key_size, m["legacy_hash"].value_size) == (
        MapType.HASH,
        4,
        8,
    )
    assert m["legacy_array"].max_entries == 2
    assert spec.kern_version == 0x060000


def test_initial_values_for_prog_array_and_map_in_map(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["tailcalls"])
    assert spec.maps["jump"].contents == [(0, ("prog", "tail_target"))]
    assert spec.maps["outer"].contents == [(1, ("map", "inner_b"))]
    inner = spec.maps["outer"].inner
    assert inner is not None and inner.type == MapType.ARRAY and inner.value_size == 4


SECTION_EXPECT = {
    "s_socket": (ProgType.SOCKET_FILTER, 0),
    "s_xdp": (ProgType.XDP, AttachType.XDP),
    "s_xdp_frags": (ProgType.XDP, AttachType.XDP),
    "s_tc": (ProgType.SCHED_CLS, 0),
    "s_classifier": (ProgType.SCHED_CLS, 0),
    "s_tcx": (ProgType.SCHED_CLS, AttachType.TCX_INGRESS),
    "s_tracepoint": (ProgType.TRACEPOINT, 0),
    "s_tp": (ProgType.TRACEPOINT, 0),
    "s_raw_tp": (ProgType.RAW_TRACEPOINT, 0),
    "s_raw_tracepoint": (ProgType.RAW_TRACEPOINT, 0),
    "s_tp_btf": (ProgType.TRACING, AttachType.TRACE_RAW_TP),
    "s_fentry": (ProgType.TRACING, AttachType.TRACE_FENTRY),
    "s_fexit": (ProgType.TRACING, AttachType.TRACE_FEXIT),
    "s_cgroup_skb_in": (ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS),
    "s_cgroup_skb_eg": (ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS),
    "s_connect4": (ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT),
    "s_sock_create": (ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE),
    "s_sysctl": (ProgType.CGROUP_SYSCTL, AttachType.CGROUP_SYSCTL),
    "s_sockops": (ProgType.SOCK_OPS, AttachType.CGROUP_SOCK_OPS),
    "s_sk_msg": (ProgType.SK_MSG, AttachType.SK_MSG_VERDICT),
    "s_sk_skb_verdict": (ProgType.SK_SKB, AttachType.SK_SKB_STREAM_VERDICT),
    "s_sk_skb_parser": (ProgType.SK_SKB, AttachType.SK_SKB_STREAM_PARSER),
    "s_lsm": (ProgType.LSM, AttachType.LSM_MAC),
    "s_perf_event": (ProgType.PERF_EVENT, 0),
    "s_kprobe": (ProgType.KPROBE, 0),
    "s_uprobe": (ProgType.KPROBE, 0),
    "s_kprobe_multi": (ProgType.KPROBE, AttachType.TRACE_KPROBE_MULTI),
    "s_uprobe_multi": (ProgType.KPROBE, AttachType.TRACE_UPROBE_MULTI),
    "s_sk_lookup": (ProgType.SK_LOOKUP, AttachType.SK_LOOKUP),
    "s_flow_dissector": (ProgType.FLOW_DISSECTOR, AttachType.FLOW_DISSECTOR),
    "s_syscall": (ProgType.SYSCALL, 0),
    "s_legacy_xdp": (ProgType.XDP, AttachType.XDP),  # pre-1.0 libbpf bare prefixes
    "s_legacy_socket": (ProgType.SOCKET_FILTER, 0),
}


def test_every_section_convention(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["sections"])
    got = {n: (p.type, p.expected_attach_type) for n, p in spec.programs.items()}
    assert got == SECTION_EXPECT
    assert spec.programs["s_fentry"].attach_to == "bpf_fentry_test1"
    assert spec.programs["s_tp_btf"].attach_to == "btf_trace_sys_enter"
    assert spec.programs["s_lsm"].attach_to == "bpf_lsm_file_open"


def test_not_elf_and_wrong_machine(tmp_path: Path) -> None:
    with pytest.raises(BPFLoadError, match="not an ELF"):
        read_elf_bytes(b"hello world", "x.o")
    with pytest.raises(BPFLoadError, match="not a BPF object"):
        read_elf_bytes(Path("/bin/true").read_bytes(), "true")
    with pytest.raises(BPFLoadError, match="cannot read"):
        read_elf(tmp_path / "missing.o")


def test_unsupported_programs_are_listed_with_a_reason(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["unsupported"])
    reasons = {n: p.unloadable_reason for n, p in spec.programs.items()}
    assert "unknown section 'weird_section'" in reasons["unknown_kind"]
    assert "freplace" in reasons["needs_target"]


def test_debug_relocations_are_not_needed(bpf_objs: dict[str, Path]) -> None:
    """Like libbpf, only code and .maps relocations matter: damage in DWARF relocations (which
    the loader never applies) must not stop a load, and must not cost time either."""
    import struct as st

    from remora.bpf.elffile import SHT_REL, ElfFile

    data = bytearray(bpf_objs["globals"].read_bytes())
    elf = ElfFile(bytes(data))
    dbg = [s for s in elf.sections if s.type == SHT_REL and s.name.startswith(".rel.debug")]
    assert dbg, "clang -g emits DWARF relocations"
    for s in dbg:
        for i in range(s.size // 16):  # point every r_info at a symbol that does not exist
            st.pack_into("<Q", data, s.offset + i * 16 + 8, (0xFFFFFF << 32) | 1)
    damaged = read_elf_bytes(bytes(data), "damaged.o")
    clean = read_elf(bpf_objs["globals"])
    assert {n: p.insns for n, p in damaged.programs.items()} == {
        n: p.insns for n, p in clean.programs.items()
    }


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("static_btf_map", "map 'hidden': unsupported map linkage static"),
        ("static_legacy_map", "map 'hidden': unsupported map linkage static"),
        ("btf_map_initialiser", "map 'hash': its definition in .maps holds a non-zero initialiser"),
        ("values_on_hash", "map 'table': HASH takes no initial values"),
        ("legacy_options", "'m' has unrecognized, non-zero options"),
    ],
)
def test_invalid_objects_are_refused_with_the_rule_they_break(
    invalid_objs: dict[str, Path], name: str, rule: str
) -> None:
    with pytest.raises(BPFLoadError) as ei:
        read_elf(invalid_objs[name])
    assert rule in str(ei.value)
    assert str(invalid_objs[name]) in str(ei.value)


def test_every_invalid_fixture_is_tested(invalid_objs: dict[str, Path]) -> None:
    assert sorted(invalid_objs) == sorted(
        [
            "static_btf_map",
            "static_legacy_map",
            "btf_map_initialiser",
            "values_on_hash",
            "legacy_options",
        ]
    )


def test_a_statically_linked_object_keeps_the_strong_definitions(linked_obj: Path) -> None:
    """The linker keeps the losing weak records in `maps`; symbols say which records count."""
    spec = read_elf(linked_obj)
    assert spec.maps["legacy_strong_here"].max_entries == 11
    assert spec.maps["legacy_weak_here"].max_entries == 22
    assert set(spec.programs) == {"calls_two", "calls_which"}
    assert all(p.unloadable_reason == "" for p in spec.programs.values())
    assert spec.programs["calls_two"].maps_used == ["legacy_weak_here"]


def test_map_extra_given_as_a_one_value_enum(bpf_objs: dict[str, Path]) -> None:
    arena = read_elf(bpf_objs["arena"]).maps["arena"]
    assert (arena.type, arena.max_entries, arena.map_extra) == (MapType.ARENA, 4, 0x40000000)


def test_a_perf_event_array_may_leave_its_sizes_out(bpf_objs: dict[str, Path]) -> None:
    events = read_elf(bpf_objs["perf_sizes"]).maps["events"]
    assert (events.key_size, events.value_size, events.max_entries) == (0, 0, 0)
    resolved = events.resolved()
    assert (resolved.key_size, resolved.value_size) == (4, 4)
    assert resolved.max_entries >= 1
