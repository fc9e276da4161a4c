from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from remora.wasm.cli import EXIT_TRAPPED, parse_size
from tests.wasm.conftest import compile_c


def remora_wasm(*argv: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """Runs the real CLI in a child process: exit codes and inherited stdio are the point."""
    cache_opt = ["--cache-dir", str(cache)] if argv[0] == "run" else []
    return subprocess.run(
        [sys.executable, "-m", "remora.wasm.cli", "wasm", argv[0], *cache_opt, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_passes_args_env_and_exit_code(
    guest_path: Callable[[str], Path], tmp_path: Path
) -> None:
    proc = remora_wasm(
        "run", "--env", "WHO=cli", str(guest_path("hello")), "--fuel", "100000000",
        "--", "3", "--not-an-option", cache=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "argc=3 [3] [--not-an-option]\nWHO=cli\n"
    assert proc.stderr == "to stderr\n"


def test_run_with_dir_and_memory(guest_path: Callable[[str], Path], tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    (box / "f.txt").write_text("data\n")
    proc = remora_wasm(
        "run", str(guest_path("fs")), "--dir", f"{box}::/in", "--dir", f"{box}::/rw:rw",
        "--max-memory", "2MiB", "--", "r:/in/f.txt", "w:/in/x", "w:/rw/y", cache=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "OK /in/f.txt data"
    assert lines[1].startswith("ERR /in/x 63")
    assert lines[2] == "OK /rw/y wrote"


@pytest.mark.parametrize(
    ("flag", "value", "limit"),
    [("--timeout", "0.2", "timeout"), ("--fuel", "1000000", "fuel")],
)
def test_run_limit_is_reported(
    guest_path: Callable[[str], Path], tmp_path: Path, flag: str, value: str, limit: str
) -> None:
    proc = remora_wasm("run", str(guest_path("spin")), flag, value, cache=tmp_path)
    assert proc.returncode == EXIT_TRAPPED
    assert f"{limit} limit ({value}) exceeded" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "content",
    [b"", b"not wasm at all", b"\0asm\x01\0\0\0\x01\x7f", b"\0asm\x01\0\0\0\x03\x02\x01\x05"],
)
def test_corrupt_module_is_a_clean_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(content)
    for command in ("run", "inspect"):
        proc = remora_wasm(command, str(bad), cache=tmp_path)
        assert proc.returncode == 1
        assert proc.stderr.startswith("remora wasm: error: ")
        assert str(bad) in proc.stderr
        assert "Traceback" not in proc.stderr


def test_random_bytes_and_text_are_rejected_as_not_binary(tmp_path: Path) -> None:
    """Anything without the binary magic is refused up front (wasmtime would try it as WAT)."""
    for name, content in [("rand.wasm", bytes(range(1, 256)) * 4), ("m.wat", b"(module)")]:
        bad = tmp_path / name
        bad.write_bytes(content)
        for command in ("run", "inspect"):
            proc = remora_wasm(command, str(bad), cache=tmp_path)
            assert proc.returncode == 1, proc.stderr
            assert (
                proc.stderr == f"remora wasm: error: {bad}: offset 0: not a WebAssembly "
                "binary (bad magic)\n"
            )


def test_malloc_failure_at_cap_is_reported_as_the_memory_limit(
    tmp_path: Path, guest_path: Callable[[str], Path]
) -> None:
    """A C guest that aborts when malloc returns NULL: exit 134 and the limit is named."""
    src = tmp_path / "greedy.c"
    src.write_text(
        "#include <stdlib.h>\n#include <stdio.h>\n"
        "int main(void) { char *volatile p = malloc(8 << 20); if (!p) abort(); p[1] = 1;"
        ' printf("got %d\\n", p[1]); return 0; }\n'
    )
    wasm = compile_c(src, tmp_path / "greedy.wasm")
    proc = remora_wasm("run", str(wasm), "--max-memory", "4MiB", cache=tmp_path)
    assert proc.returncode == EXIT_TRAPPED
    assert proc.stderr.startswith(f"remora wasm: error: {wasm}: max_memory limit (4194304) ")
    assert "bytes was refused" in proc.stderr and "at <module>!abort" in proc.stderr
    roomy = remora_wasm("run", str(wasm), "--max-memory", "16MiB", cache=tmp_path)
    assert (roomy.returncode, roomy.stdout, roomy.stderr) == (0, "got 1\n", "")


def test_graceful_refusal_gets_a_note(guest_path: Callable[[str], Path], tmp_path: Path) -> None:
    proc = remora_wasm("run", "--max-memory", "8MiB", str(guest_path("membomb")), cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("blocks=")
    assert proc.stderr.startswith("remora wasm: note: ")
    assert "refused" in proc.stderr and "max_memory limit (8388608)" in proc.stderr


def test_invalid_exit_status_is_a_trap(guest_path: Callable[[str], Path], tmp_path: Path) -> None:
    proc = remora_wasm("run", str(guest_path("hello")), "--", "255", cache=tmp_path)
    assert proc.returncode == EXIT_TRAPPED
    assert proc.stderr.endswith(
        "exit with invalid exit status outside of [0..126) (trap code None)\n"
    )
    ok = remora_wasm("run", str(guest_path("hello")), "--", "125", cache=tmp_path)
    assert ok.returncode == 125


def test_dir_without_guest_path_and_options_on_both_sides(
    guest_path: Callable[[str], Path], tmp_path: Path
) -> None:
    box = tmp_path / "same"
    box.mkdir()
    (box / "f.txt").write_text("same path\n")
    proc = remora_wasm(
        "run", "--timeout", "5", "--dir", str(box), str(guest_path("fs")), "--max-memory",
        "16MiB", "--env", "A=B", "--", f"r:{box}/f.txt", cache=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"OK {box}/f.txt same path\n"


def test_usage_error_names_only_what_is_missing(tmp_path: Path) -> None:
    proc = remora_wasm("run", cache=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].endswith("the following arguments are required: module")


def test_missing_module_file(tmp_path: Path) -> None:
    proc = remora_wasm("run", str(tmp_path / "nope.wasm"), cache=tmp_path)
    assert proc.returncode == 1
    assert "cannot read module" in proc.stderr


def test_inspect_json(guest_path: Callable[[str], Path], tmp_path: Path) -> None:
    proc = remora_wasm("inspect", "--json", str(guest_path("compute")), cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["imports"][0] == {
        "module": "host", "name": "add", "kind": "func", "type": "(i32, i32) -> (i32)",
    }  # fmt: skip
    assert [m["name"] for m in doc["memories"]] == ["memory"]
    assert [c["name"] for c in doc["custom_sections"]] == ["name"]


def test_inspect_text(guest_path: Callable[[str], Path], tmp_path: Path) -> None:
    proc = remora_wasm("inspect", str(guest_path("hello")), cache=tmp_path)
    assert proc.returncode == 0
    assert "func    wasi_snapshot_preview1.fd_write" in proc.stdout
    assert "producers" in proc.stdout


def test_registered_in_remora_cli() -> None:
    from remora import cli

    args = cli.build_parser().parse_args(
        ["wasm", "run", "m.wasm", "--fuel", "5", "--max-memory", "1MiB", "--", "x", "--fuel"]
    )
    assert (args.module, args.fuel, args.max_memory) == (Path("m.wasm"), 5, 1 << 20)
    assert args.guest_args == ["x", "--fuel"]
    assert args.handler.__name__ == "_run"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("65536", 65536), ("16MiB", 16 << 20), ("64KiB", 65536), ("1GiB", 1 << 30), ("2M", 2_000_000),
     ("3kb", 3000), ("7B", 7)],
)  # fmt: skip
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "-1", "1.5MiB", "12XB"])
def test_parse_size_rejects(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
        parse_size(text)
