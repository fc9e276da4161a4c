from __future__ import annotations

import ctypes
import errno
from pathlib import Path

import pytest

from remora.bpf.btf.kernel import kernel_btf
from remora.bpf.btf.types import Kind
from remora.bpf.collection import Collection
from remora.bpf.cpus import possible_cpus
from remora.bpf.errors import (
    BPFError,
    BPFLoadError,
    BPFSyscallError,
    BPFTypeMismatchError,
    VerifierError,
)
from remora.bpf.sys.types import ProgType

pytestmark = pytest.mark.usefixtures("bpf_root")

PKT = bytes([10, 0, 0, 1]) + bytes(60)


class FlowKey(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32), ("port", ctypes.c_uint16), ("proto", ctypes.c_uint16)]


class FlowVal(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def test_load_run_and_read_maps(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["globals"]) as c:
        prog = c.programs["xdp_count"]
        assert prog.type == ProgType.XDP
        res = prog.test_run(PKT, repeat=3)
        assert res.retval == 2  # `verdict` default
        flows = c.maps["flows"].with_types(key=FlowKey, value=FlowVal)
        v = flows[FlowKey(int.from_bytes(PKT[:4], "little"), 80, 6)]
        assert (v.packets, v.bytes) == (3, 3 * 64)
        # bump() -> add_twice(1, 2) adds 5 per run, through a subprogram call
        assert c.maps["counters"][0] == 15
        assert int.from_bytes(c.variable("hits"), "little") == 7 + 3
        assert int.from_bytes(c.variable("zeroed"), "little") == 6
        assert int.from_bytes(c.variable("custom_data"), "little") == 5 + 3 * 9
        # second program in the same section, per-CPU map
        assert c.programs["xdp_magic"].test_run(PKT).retval == 2
        assert sum(c.maps["percpu"][0]) == 1
        assert len(c.maps["percpu"][0]) == possible_cpus()
        # skb->len excludes the Ethernet header the kernel pulls
        assert c.programs["sock_all"].test_run(PKT).retval == len(PKT) - 14


def test_constants_are_set_before_load_and_rodata_is_frozen(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["globals"], constants={"verdict": 1, "magic": 5}) as c:
        assert c.programs["xdp_count"].test_run(PKT).retval == 1
        assert c.programs["xdp_magic"].test_run(PKT).retval == 1  # magic changed
        with pytest.raises(BPFSyscallError) as ei:
            c.maps[".rodata"][0] = bytes(16)
        assert ei.value.errno == errno.EPERM


def test_typed_map_checked_against_btf(bpf_objs: dict[str, Path]) -> None:
    class Swapped(ctypes.Structure):
        _fields_ = [("bytes", ctypes.c_uint64), ("packets", ctypes.c_uint64)]

    class Renamed(ctypes.Structure):
        _fields_ = [("saddr", ctypes.c_uint32), ("dport", ctypes.c_uint16), ("p", ctypes.c_uint16)]

    class Shifted(ctypes.Structure):  # same size and names, wrong member sizes and offsets
        _fields_ = [
            ("saddr", ctypes.c_uint16),
            ("port", ctypes.c_uint16),
            ("proto", ctypes.c_uint32),
        ]

    with Collection.load(bpf_objs["globals"], programs=["xdp_count"]) as c:
        m = c.maps["flows"]
        with pytest.raises(BPFTypeMismatchError, match=r"'bytes'.*'packets'"):
            m.with_types(value=Swapped)
        with pytest.raises(BPFTypeMismatchError, match="'dport'"):
            m.with_types(key=Renamed)
        with pytest.raises(BPFTypeMismatchError, match=r"'saddr' of Shifted is 2 bytes.*has 4"):
            m.with_types(key=Shifted)
        with pytest.raises(BPFTypeMismatchError, match="16 bytes"):
            m.with_types(value=FlowKey)
        m.with_types(key=FlowKey, value=FlowVal)  # the right types pass
        counters = c.maps["counters"]  # __u32 -> __u64
        counters.with_types(key=ctypes.c_uint32, value=ctypes.c_uint64)
        with pytest.raises(BPFTypeMismatchError, match="c_long is signed but BTF __u64"):
            counters.with_types(value=ctypes.c_int64)
        with pytest.raises(BPFTypeMismatchError, match="c_double is a float"):
            counters.with_types(value=ctypes.c_double)
        with pytest.raises(BPFTypeMismatchError, match="c_ulong is an integer but BTF struct"):
            m.with_types(key=ctypes.c_uint64)  # flows' key is a struct of the same size


def test_only_requested_program_and_its_maps(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["globals"], programs=["sock_all"]) as c:
        assert list(c.programs) == ["sock_all"]
        assert sorted(c.maps) == ["counters"]
    with pytest.raises(BPFLoadError, match="no program 'nope'"):
        Collection.load(bpf_objs["globals"], programs=["nope"])


def test_legacy_maps_load_and_run(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["legacy"]) as c:
        c.maps["legacy_array"][1] = 2
        assert c.programs["legacy_prog"].test_run(PKT).retval == 2
        assert c.maps["legacy_hash"][1] == 1


def test_prog_array_and_map_in_map_initialised(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["tailcalls"]) as c:
        target_id = c.programs["tail_target"].info().id
        assert c.maps["jump"][0] == target_id
        assert c.maps["outer"][1] == c.maps["inner_b"].info().id
        # the tail call really happens: entry returns tail_target's 3, not its own 1
        assert c.programs["tail_entry"].test_run(PKT).retval == 3
        assert c.maps["inner_b"][0] == 1  # reached through the outer map


def test_verifier_error_points_at_source_line(bpf_objs: dict[str, Path]) -> None:
    src = Path(__file__).parent / "progs" / "verifier_fail.bpf.c"
    want = next(i for i, line in enumerate(src.read_text().splitlines(), 1) if "FAIL_HERE" in line)
    with pytest.raises(VerifierError) as ei:
        Collection.load(bpf_objs["verifier_fail"])
    err = ei.value
    assert err.source is not None
    assert f"verifier_fail.bpf.c:{want}:" in err.source
    assert "FAIL_HERE" in err.source
    assert "invalid access to packet" in err.log
    assert f"verifier_fail.bpf.c:{want}" in str(err)


def test_verifier_error_in_a_subprogram_points_at_its_line(bpf_objs: dict[str, Path]) -> None:
    src = Path(__file__).parent / "progs" / "verifier_subprog.bpf.c"
    lines = src.read_text().splitlines()
    want = next(i for i, line in enumerate(lines, 1) if "SUBPROG_FAIL" in line)
    with Collection.load(bpf_objs["verifier_subprog"], programs=["fine"]) as c:
        assert c.programs["fine"].test_run(PKT).retval == 2  # its section sibling is not loaded
    with pytest.raises(VerifierError) as ei:
        Collection.load(bpf_objs["verifier_subprog"], programs=["calls_bad"])
    source = ei.value.source
    assert source is not None
    assert f"verifier_subprog.bpf.c:{want}:" in source and "SUBPROG_FAIL" in source


def test_kernel_btf_is_not_read_for_objects_that_do_not_need_it(
    bpf_objs: dict[str, Path],
) -> None:
    kernel_btf.cache_clear()
    with Collection.load(bpf_objs["globals"]) as c:
        c.programs["xdp_count"].test_run(PKT)
    assert kernel_btf.cache_info().currsize == 0
    kb = kernel_btf()
    assert kernel_btf() is kb  # read once per process, then cached


def test_every_section_kind_loads_or_says_why(bpf_objs: dict[str, Path]) -> None:
    from remora.bpf.elf import read_elf

    spec = read_elf(bpf_objs["sections"])
    loaded, refused = [], {}
    for name in spec.programs:
        try:
            with Collection.load(bpf_objs["sections"], programs=[name]):
                loaded.append(name)
        except BPFSyscallError as e:
            refused[name] = e
    # This kernel lacks BPF trampolines for fentry/fexit/lsm (bpftool fails the same way),
    # and the error must say so; every other convention must load.
    assert set(refused) <= {"s_fentry", "s_fexit", "s_lsm"}
    for why in refused.values():
        assert why.errno == errno.EPERM and "trampolines" in str(why)
    assert len(loaded) >= len(spec.programs) - 3


def test_kernel_btf_lookup_is_lazy_and_right() -> None:
    kb = kernel_btf()
    tid = kb.find("bpf_fentry_test1", Kind.FUNC)
    assert kb.find("bpf_fentry_test1", Kind.FUNC) == tid  # cached
    from remora.bpf.btf.types import Spec

    full = Spec(kb.raw)  # slow full parse, only to cross-check the lazy walk
    assert full.types[tid].name == "bpf_fentry_test1" and full.types[tid].kind == Kind.FUNC
    tp = kb.find("btf_trace_sys_enter", Kind.TYPEDEF)
    assert full.types[tp].name == "btf_trace_sys_enter"
    with pytest.raises(BPFLoadError, match="no func named 'no_such_fn_xyz'"):
        kb.find("no_such_fn_xyz", Kind.FUNC)


def test_map_pins_reuse_by_name(bpf_objs: dict[str, Path], bpffs_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "pinned.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        "struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);"
        ' __type(value, __u64); __uint(pinning, LIBBPF_PIN_BY_NAME); } shared SEC(".maps");\n'
        'SEC("xdp") int p(void *ctx) { __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&shared, &k);'
        " if (v) *v += 1; return 2; }\n"
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    import subprocess

    from tests.bpf.conftest import CLANG_FLAGS

    obj = tmp_path / "pinned.o"
    subprocess.run(["clang", *CLANG_FLAGS, "-c", str(src), "-o", str(obj)], check=True)
    with Collection.load(obj, map_pins=bpffs_dir) as c:
        c.programs["p"].test_run(PKT)
    assert (bpffs_dir / "shared").exists()
    with Collection.load(obj, map_pins=bpffs_dir) as c:
        c.programs["p"].test_run(PKT)
        assert c.maps["shared"][0] == 2  # the second load reused the pinned map


def test_pin_all(bpf_objs: dict[str, Path], bpffs_dir: Path) -> None:
    from remora.bpf.prog import Program

    with Collection.load(bpf_objs["legacy"]) as c:
        paths = c.pin(bpffs_dir)
    assert sorted(Path(p).name for p in paths) == [
        "map_legacy_array",
        "map_legacy_hash",
        "prog_legacy_prog",
    ]
    with Program.open_pinned(bpffs_dir / "prog_legacy_prog") as p:
        assert p.test_run(PKT).retval == 0


def test_failed_load_releases_everything(bpf_objs: dict[str, Path]) -> None:
    # bpf_root's fd-leak check verifies that maps/BTF created before the failure were closed.
    with pytest.raises(VerifierError):
        Collection.load(bpf_objs["verifier_fail"])


@pytest.mark.parametrize("prog", ["unknown_kind", "needs_target"])
def test_unsupported_programs_refuse_before_the_kernel(
    bpf_objs: dict[str, Path], prog: str
) -> None:
    with pytest.raises(BPFLoadError, match=f"program '{prog}' cannot be loaded"):
        Collection.load(bpf_objs["unsupported"], programs=[prog])


def test_object_without_btf(tmp_path: Path) -> None:
    """clang without -g emits no .BTF: legacy maps and programs still load, just without lines."""
    import subprocess

    from tests.bpf.conftest import PROGS

    obj = tmp_path / "nobtf.o"
    flags = ["-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"]
    subprocess.run(["clang", *flags, "-c", str(PROGS / "legacy.bpf.c"), "-o", str(obj)], check=True)
    with Collection.load(obj) as c:
        assert c.spec.btf is None and c.btf_fd is None
        c.maps["legacy_array"][1] = 4
        assert c.programs["legacy_prog"].test_run(PKT).retval == 4
    globals_obj = tmp_path / "globals_nobtf.o"
    src = PROGS / "globals.bpf.c"
    subprocess.run(["clang", *flags, "-c", str(src), "-o", str(globals_obj)], check=True)
    with pytest.raises(BPFLoadError, match="BTF-defined maps need BTF"):
        Collection.load(globals_obj)


def test_a_statically_linked_object_loads_with_the_strong_definitions(linked_obj: Path) -> None:
    with Collection.load(linked_obj) as c:
        assert c.programs["calls_which"].test_run(PKT).retval == 2  # two.c's strong which()
        assert c.programs["calls_two"].test_run(PKT).retval == 4  # its map is still empty
        c.maps["legacy_weak_here"][0] = 1
        assert c.programs["calls_two"].test_run(PKT).retval == 5
        assert c.maps["legacy_strong_here"].max_entries == 11
        assert c.maps["legacy_weak_here"].max_entries == 22
        assert sorted(c.maps) == [
            "btf_strong_here",
            "btf_weak_here",
            "legacy_strong_here",
            "legacy_weak_here",
        ]


def test_a_perf_event_array_without_sizes_gets_one_entry_per_cpu(
    bpf_objs: dict[str, Path],
) -> None:
    with Collection.load(bpf_objs["perf_sizes"]) as c:
        events = c.maps["events"]
        assert (events.key_size, events.value_size) == (4, 4)
        assert events.max_entries == possible_cpus()


def test_an_arena_map_or_why_the_kernel_has_none(bpf_objs: dict[str, Path]) -> None:
    from remora.bpf.kconfig import kernel_config

    _, config = kernel_config()
    if config.get("CONFIG_BPF_ARENA") == "y":
        with Collection.load(bpf_objs["arena"]) as c:
            assert c.maps["arena"].spec is not None
            assert c.maps["arena"].spec.map_extra == 0x40000000
    else:
        with pytest.raises(BPFError, match="no arena maps \\(CONFIG_BPF_ARENA is not set"):
            Collection.load(bpf_objs["arena"])


def test_struct_ops_is_listed_and_refused_by_name_while_the_rest_loads(
    bpf_objs: dict[str, Path],
) -> None:
    from remora.bpf.elf import read_elf
    from remora.bpf.sys.types import MapType

    spec = read_elf(bpf_objs["struct_ops"])
    assert spec.maps["remora_cc"].type == MapType.STRUCT_OPS
    assert "struct tcp_congestion_ops" in spec.maps["remora_cc"].unsupported
    assert spec.programs["remora_init"].type == ProgType.STRUCT_OPS
    assert "not supported by remora yet" in spec.programs["remora_init"].unloadable_reason
    with pytest.raises(BPFError, match="map 'remora_cc' cannot be created: struct tcp_"):
        Collection.load(bpf_objs["struct_ops"])
    with Collection.load(bpf_objs["struct_ops"], programs=["plain"]) as c:
        assert c.programs["plain"].test_run(PKT).retval == 4
