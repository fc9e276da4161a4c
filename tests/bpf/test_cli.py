from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from remora.bpf import cli


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="remora")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc: int = args.handler(args)
    return rc


def test_inspect_text_and_json(
    bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["bpf", "inspect", str(bpf_objs["globals"])]) == 0
    text = capsys.readouterr().out
    assert "xdp_count" in text and "struct flow_key -> struct flow_val" in text
    assert "verdict" in text and "const __u32 = 2" in text
    assert run(["bpf", "inspect", str(bpf_objs["globals"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["license"] == "Dual BSD/GPL"
    progs = {p["name"]: p for p in info["programs"]}
    assert progs["xdp_count"]["section"] == "xdp" and progs["xdp_count"]["type"] == "xdp"
    assert progs["sock_all"]["insns"] > 0
    maps = {m["name"]: m for m in info["maps"]}
    assert maps["flows"]["key_type"] == "struct flow_key" and maps["flows"]["max_entries"] == 128
    assert {v["name"] for v in info["variables"]} >= {"verdict", "magic", "hits"}


def test_corrupt_object_is_one_clean_line(
    tmp_path: Path, bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.o"
    bad.write_bytes(bpf_objs["globals"].read_bytes()[:3000])
    assert run(["bpf", "inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("remora bpf inspect: error:") and "Traceback" not in err
    assert str(bad) in err


def test_run_with_data_repeat_and_constants(
    tmp_path: Path, bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str], bpf_root: None
) -> None:
    data = tmp_path / "pkt.bin"
    data.write_bytes(bytes(range(64)))
    obj = str(bpf_objs["globals"])
    assert run(["bpf", "run", obj, "xdp_count", "--data", str(data), "--repeat", "20"]) == 0
    assert "xdp_count: retval 2, average" in capsys.readouterr().out
    argv = ["bpf", "run", obj, "xdp_count", "--repeat", "5", "--set", "verdict=1", "--json"]
    assert run(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["retval"] == 1 and out["repeat"] == 5 and out["duration_ns"] >= 0
    assert run(["bpf", "run", obj, "nope"]) == 1
    assert "no program 'nope'" in capsys.readouterr().err
    assert run(["bpf", "run", obj, "xdp_count", "--set", "verdict"]) == 1


def test_load_pins_everything(
    bpf_objs: dict[str, Path], bpffs_dir: Path, capsys: pytest.CaptureFixture[str], bpf_root: None
) -> None:
    assert run(["bpf", "load", str(bpf_objs["legacy"]), "--pin", str(bpffs_dir), "--json"]) == 0
    pinned = json.loads(capsys.readouterr().out)["pinned"]
    assert sorted(Path(p).name for p in pinned) == [
        "map_legacy_array",
        "map_legacy_hash",
        "prog_legacy_prog",
    ]
    assert all(Path(p).exists() for p in pinned)


def test_load_names_the_program_that_cannot_load_and_loads_the_rest_on_request(
    bpf_objs: dict[str, Path], bpffs_dir: Path, capsys: pytest.CaptureFixture[str], bpf_root: None
) -> None:
    obj = str(bpf_objs["unresolved"])
    assert run(["bpf", "load", obj, "--pin", str(bpffs_dir)]) == 1
    err = capsys.readouterr().err
    assert "cannot be loaded" in err and "--program NAME" in err
    assert list(bpffs_dir.iterdir()) == []
    assert run(["bpf", "load", obj, "--pin", str(bpffs_dir), "--program", "fine", "--json"]) == 0
    pinned = json.loads(capsys.readouterr().out)["pinned"]
    assert [Path(p).name for p in pinned] == ["prog_fine"]
    assert run(["bpf", "load", obj, "--pin", str(bpffs_dir), "--program", "nope"]) == 1
    assert "no program 'nope'" in capsys.readouterr().err


def test_load_makes_a_missing_pin_dir_inside_bpffs(
    bpf_objs: dict[str, Path], bpffs_dir: Path, capsys: pytest.CaptureFixture[str], bpf_root: None
) -> None:
    target = bpffs_dir / "new"
    assert run(["bpf", "load", str(bpf_objs["legacy"]), "--pin", str(target)]) == 0
    assert (target / "prog_legacy_prog").exists()


def test_load_outside_bpffs_is_an_error(
    bpf_objs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], bpf_root: None
) -> None:
    assert run(["bpf", "load", str(bpf_objs["legacy"]), "--pin", str(tmp_path)]) == 1
    assert "not on a bpf filesystem" in capsys.readouterr().err


def test_bpf_without_subcommand_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["bpf"]) == 2
    assert "inspect" in capsys.readouterr().err


def test_inspect_shows_arrays_and_structs_as_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    from tests.bpf.conftest import CLANG_FLAGS

    src = tmp_path / "v.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        "struct pair { unsigned short a, b; };\n"
        'const volatile char tag[8] = "hello";\n'
        "const volatile struct pair pr = { 1, 2 };\n"
        "const volatile unsigned int n = 7;\n"
        'SEC("xdp") int p(void *ctx) { return tag[0] + pr.a + n; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    obj = tmp_path / "v.o"
    subprocess.run(["clang", *CLANG_FLAGS, "-c", str(src), "-o", str(obj)], check=True)
    assert run(["bpf", "inspect", str(obj), "--json"]) == 0
    vs = {v["name"]: v for v in json.loads(capsys.readouterr().out)["variables"]}
    assert vs["tag"]["int"] is None and bytes.fromhex(vs["tag"]["value"]) == b"hello\0\0\0"
    assert vs["pr"]["int"] is None and vs["pr"]["value"] == "01000200"
    assert vs["n"]["int"] == 7
    assert run(["bpf", "inspect", str(obj)]) == 0
    text = capsys.readouterr().out
    assert "= 0x68656c6c6f000000" in text and "= 7" in text
    # An integer would be spread over the struct's (or array's) bytes: refused by name.
    for name, kind in (("pr", "struct pair"), ("tag", "char[8]")):
        assert run(["bpf", "run", str(obj), "p", "--set", f"{name}=3"]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"remora bpf run: error: variable {name!r} is {kind} ({4 if name == 'pr' else 8} "
            "bytes): give bytes or a ctypes value, not an integer\n"
        )


def test_inspect_tables_have_headers(
    bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["bpf", "inspect", str(bpf_objs["globals"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [line.split() for line in lines if line.startswith("  NAME ")]
    assert headers == [
        ["NAME", "SECTION", "TYPE", "INSNS", "MAPS"],
        ["NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "BTF", "TYPES"],
        ["NAME", "SECTION", "OFFSET", "SIZE", "KIND", "TYPE", "=", "VALUE"],
    ]
    flows = next(line.split() for line in lines if line.startswith("  flows "))
    assert flows[:5] == ["flows", "hash", "8", "16", "128"]


def test_run_data_file_errors_name_the_flag(
    tmp_path: Path, bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str], bpf_root: None
) -> None:
    obj = str(bpf_objs["globals"])
    missing = tmp_path / "nosuch.bin"
    assert run(["bpf", "run", obj, "xdp_count", "--data", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err == f"remora bpf run: error: --data {missing}: No such file or directory\n"
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    for data in (b"", b"\0" * 13):
        empty.write_bytes(data)
        assert run(["bpf", "run", obj, "xdp_count", "--data", str(empty)]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"remora bpf run: error: program 'xdp_count': PROG_TEST_RUN refused {len(data)} bytes "
            "of packet data; xdp programs need at least 14 (an Ethernet header)\n"
        )
    empty.write_bytes(b"\0" * 14)
    assert run(["bpf", "run", obj, "xdp_count", "--data", str(empty)]) == 0


def test_run_context_only_program_and_refused_repeat(
    bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str], bpf_root: None
) -> None:
    obj = str(bpf_objs["sections"])
    assert run(["bpf", "run", obj, "s_syscall", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["retval"] == 0
    assert run(["bpf", "run", obj, "s_syscall", "--repeat", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("remora bpf run: error: syscall programs") and err.count("\n") == 1
    assert run(["bpf", "run", obj, "s_tracepoint"]) == 1  # no test run for this type
    err = capsys.readouterr().err
    assert "PROG_TEST_RUN" in err and err.count("\n") == 1


def test_layout_text_json_and_errors(
    bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    obj = str(bpf_objs["layout"])
    assert run(["bpf", "layout", obj, "holes"]) == 0
    assert "/* XXX 7 bytes hole, try to pack */" in capsys.readouterr().out
    assert run(["bpf", "layout", obj, "holes", "tight", "--json"]) == 0
    types = json.loads(capsys.readouterr().out)["types"]
    assert [(t["name"], t["size"], t["saves"]) for t in types] == [
        ("holes", 32, 16),
        ("tight", 16, 0),
    ]
    assert run(["bpf", "layout", obj, "nope"]) == 1
    assert "no struct or union named 'nope'" in capsys.readouterr().err
    assert run(["bpf", "layout", str(tmp_path / "missing.o")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_features_json_without_helpers(capsys: pytest.CaptureFixture[str], bpf_root: None) -> None:
    assert run(["bpf", "features", "--no-helpers", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["program_types"]["xdp"] == "yes"
    assert out["map_types"]["ringbuf"] == "yes"
    assert out["helpers"] == {}


def test_gen_writes_a_module_or_prints_it(
    bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "globals_bpf.py"
    assert run(["bpf", "gen", str(bpf_objs["globals"]), "-o", str(out)]) == 0
    assert "class flow_key(ctypes.Structure):" in out.read_text()
    assert f"wrote {out}" in capsys.readouterr().err
    assert run(["bpf", "gen", str(bpf_objs["globals"])]) == 0
    assert capsys.readouterr().out == out.read_text()
    assert run(["bpf", "gen", str(tmp_path / "missing.o")]) == 1


def test_run_with_a_btf_file_for_core(
    bpf_objs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path, bpf_root: None
) -> None:
    ctx = tmp_path / "ctx.bin"
    ctx.write_bytes(bytes(8 * 16))  # struct out: 16 u64 slots
    obj = str(bpf_objs["core"])
    args = ["bpf", "run", obj, "core_fields", "--data", str(ctx), "--json"]
    assert run([*args, "--btf", "/sys/kernel/btf/vmlinux"]) == 0
    assert json.loads(capsys.readouterr().out)["retval"] == 0
    assert run([*args, "--btf", str(tmp_path / "missing.btf")]) == 1
    assert "missing.btf" in capsys.readouterr().err
