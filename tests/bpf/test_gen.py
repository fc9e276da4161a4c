"""`remora bpf gen`: the generated module imports, loads its object, and types its maps."""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from remora.bpf.elf import read_elf
from remora.bpf.errors import BPFError
from remora.bpf.gen import generate

PKT = bytes([10, 0, 0, 1]) + bytes(60)


def _module(obj: Path, tmp_path: Path, name: str) -> tuple[ModuleType, Path]:
    path = tmp_path / f"{name}.py"
    path.write_text(generate(read_elf(obj), str(obj)))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclass-free, but `from __future__` annotations need it
    spec.loader.exec_module(module)
    return module, path


def test_generated_types_match_btf_and_the_code_is_clean(
    bpf_objs: dict[str, Path], tmp_path: Path
) -> None:
    module, path = _module(bpf_objs["layout"], tmp_path, "layout_bpf")
    assert ctypes.sizeof(module.holes) == 32
    assert module.holes.count.offset == 8 and module.holes.port.offset == 24
    assert ctypes.sizeof(module.nested) == 56 and module.nested.addr.offset == 32
    assert ctypes.sizeof(module.bits) == 16 and module.bits.d.offset == 8
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff is not None
    for args in (["check", "--select", "E,F,W,B,UP"], ["format", "--check"]):
        subprocess.run(
            [ruff, *args, "--isolated", "--line-length", "100", str(path)],
            check=True,
            capture_output=True,
        )


def test_generated_accessors_load_and_read_typed_values(
    bpf_objs: dict[str, Path], tmp_path: Path, bpf_root: None
) -> None:
    module, _ = _module(bpf_objs["globals"], tmp_path, "globals_bpf")
    with module.load() as objs:
        assert objs.programs.xdp_count.test_run(PKT, repeat=2).retval == 2
        # the map is typed with the generated structs, checked against BTF by with_types
        value = objs.maps.flows[module.flow_key(int.from_bytes(PKT[:4], "little"), 80, 6)]
        assert isinstance(value, module.flow_val) and value.packets == 2
        assert objs.maps.counters[0] == 10
    with module.load(programs=["sock_all"]) as objs:
        assert objs.programs.xdp_count is None and objs.maps.flows is None
        assert objs.programs.sock_all.test_run(PKT).retval == len(PKT) - 14


def test_enums_become_int_enums(tmp_path: Path) -> None:
    src = tmp_path / "enums.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        "enum verdict { V_DROP = 0, V_PASS = 2, V_LATER = -1 };\n"
        "struct rule { enum verdict v; __u8 proto; };\n"
        "struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);"
        ' __type(key, __u32); __type(value, struct rule); } rules SEC(".maps");\n'
    )
    obj = tmp_path / "enums.o"
    clang = shutil.which("clang")
    assert clang is not None
    subprocess.run(
        [
            clang,
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
            str(src),
            "-o",
            str(obj),
        ],
        check=True,
    )
    module, _ = _module(obj, tmp_path, "enums_bpf")
    assert module.verdict.V_PASS == 2 and module.verdict.V_LATER == -1
    assert ctypes.sizeof(module.rule) == 8
    assert module.rule.v.size == 4 and module.rule.proto.offset == 4


def test_an_object_without_btf_is_refused(tmp_path: Path, bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["globals"])
    spec.btf = None
    with pytest.raises(BPFError, match="no BTF"):
        generate(spec, "x.o")
