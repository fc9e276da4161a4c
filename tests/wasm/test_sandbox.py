from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from remora.wasm.runner import WasmHost
from remora.wasm.sandbox import OutputBuffer, PolicyError, Preopen, SandboxPolicy, VirtualClock

# wasi-libc errno numbers (WASI preview 1 numbering).
EPERM, ENOTCAPABLE = 63, 76


@pytest.fixture(scope="module")
def host() -> WasmHost:
    return WasmHost()


def test_default_policy_grants_nothing(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    os.environ["WHO"] = "host-value"  # must not leak into the guest
    try:
        result = host.run(guest("hello"), SandboxPolicy())
    finally:
        del os.environ["WHO"]
    assert result.stdout == b"argc=0\nWHO=(unset)\n"
    assert result.stderr == b"to stderr\n"
    assert result.exit_code == 0


def test_args_env_stdin_are_explicit(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    policy = SandboxPolicy(args=("hello", "5", "two words"), env={"WHO": "me"}, stdin=b"in\n")
    result = host.run(guest("hello"), policy)
    assert result.stdout == b"argc=3 [5] [two words]\nWHO=me\nin\n"
    assert result.exit_code == 5


def test_stdout_is_bounded(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    policy = SandboxPolicy(stdin=b"x" * 10_000, stdout_cap=100, stderr_cap=4)
    result = host.run(guest("hello"), policy)
    assert len(result.stdout) == 100
    assert result.stdout.startswith(b"argc=0\nWHO=(unset)\nxxx")
    assert result.stdout_truncated
    assert (result.stderr, result.stderr_truncated) == (b"to s", True)


def test_output_buffer_counts_dropped_bytes() -> None:
    buf = OutputBuffer(5)
    assert buf.write(b"abc") == 3
    assert buf.write(b"defg") == 4
    assert (buf.getvalue(), buf.dropped) == (b"abcde", 2)


@pytest.fixture
def fs_tree(tmp_path: Path) -> Path:
    """root/secret.txt (outside), root/box/ (preopened) with symlinks that point outside."""
    (tmp_path / "secret.txt").write_text("SECRET\n")
    box = tmp_path / "box"
    (box / "sub").mkdir(parents=True)
    (box / "inside.txt").write_text("inside\n")
    (box / "filelink").symlink_to("../secret.txt")
    (box / "dirlink").symlink_to("..")
    (box / "abslink").symlink_to(tmp_path / "secret.txt")
    return tmp_path


def run_fs(host: WasmHost, wasm: bytes, root: Path, *ops: str, writable: bool = False) -> list[str]:
    policy = SandboxPolicy(args=("fs", *ops), preopens=(Preopen(root / "box", "/box", writable),))
    out = host.run(wasm, policy).stdout.decode()
    assert "SECRET" not in out
    return out.splitlines()


def test_traversal_attempts_fail_with_wasi_errors(
    host: WasmHost, guest: Callable[[str], bytes], fs_tree: Path
) -> None:
    escapes = {
        "/box/../secret.txt": EPERM,
        "/box/sub/../../secret.txt": EPERM,
        "../secret.txt": ENOTCAPABLE,
        f"{fs_tree}/secret.txt": ENOTCAPABLE,
        "/etc/passwd": ENOTCAPABLE,
        "/box/filelink": EPERM,
        "/box/dirlink/secret.txt": EPERM,
        "/box/abslink": EPERM,
    }
    lines = run_fs(host, guest("fs"), fs_tree, "r:/box/inside.txt", *(f"r:{p}" for p in escapes))
    assert lines[0] == "OK /box/inside.txt inside"
    for line, (path, errno) in zip(lines[1:], escapes.items(), strict=True):
        assert line.startswith(f"ERR {path} {errno} "), line


def test_preopen_is_read_only_by_default(
    host: WasmHost, guest: Callable[[str], bytes], fs_tree: Path
) -> None:
    lines = run_fs(host, guest("fs"), fs_tree, "w:/box/new.txt", "w:/box/inside.txt")
    assert lines[0].startswith(f"ERR /box/new.txt {EPERM} ")
    assert lines[1].startswith(f"ERR /box/inside.txt {EPERM} ")
    assert not (fs_tree / "box" / "new.txt").exists()
    assert (fs_tree / "box" / "inside.txt").read_text() == "inside\n"


def test_writable_preopen_allows_writes_inside_only(
    host: WasmHost, guest: Callable[[str], bytes], fs_tree: Path
) -> None:
    lines = run_fs(
        host, guest("fs"), fs_tree, "w:/box/new.txt", "w:/box/../escaped.txt",
        "w:/box/filelink", "w:/box/abslink", "w:/box/dirlink/escaped.txt", writable=True,
    )  # fmt: skip
    assert lines[0] == "OK /box/new.txt wrote"
    assert lines[1].startswith("ERR /box/../escaped.txt")
    # Writing through a symlink that leaves the preopen fails, even though the preopen is rw.
    for line, path in zip(lines[2:], ["filelink", "abslink", "dirlink/escaped.txt"], strict=True):
        assert line.startswith(f"ERR /box/{path} {EPERM} "), line
    assert (fs_tree / "box" / "new.txt").read_text() == "written\n"
    assert not (fs_tree / "escaped.txt").exists()
    assert (fs_tree / "secret.txt").read_text() == "SECRET\n"


def test_virtual_clock_and_seeded_random_are_reproducible(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    policy = SandboxPolicy(
        virtual_clock=VirtualClock(start_ns=5 * 10**9, step_ns=7), random_seed=42
    )
    first = host.run(guest("determinism"), policy).stdout
    second = host.run(guest("determinism"), policy).stdout
    assert first == second
    assert first.startswith(b"5.000000000 5.000000007 ")
    other_seed = SandboxPolicy(virtual_clock=VirtualClock(), random_seed=43)
    assert host.run(guest("determinism"), other_seed).stdout[-17:] != first[-17:]


def test_real_clock_and_random_without_policy(
    host: WasmHost, guest: Callable[[str], bytes]
) -> None:
    first = host.run(guest("determinism"), SandboxPolicy()).stdout
    second = host.run(guest("determinism"), SandboxPolicy()).stdout
    assert first != second


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/data::/d", Preopen(Path("/data"), "/d", False)),
        ("/data::/d:rw", Preopen(Path("/data"), "/d", True)),
        ("/data::/d:ro", Preopen(Path("/data"), "/d", False)),
        ("/data", Preopen(Path("/data"), "/data", False)),
    ],
)
def test_preopen_spec_parsing(spec: str, expected: Preopen) -> None:
    assert Preopen.parse(spec) == expected


@pytest.mark.parametrize("spec", ["::/guest", "/host::", "::"])
def test_bad_preopen_spec(spec: str) -> None:
    with pytest.raises(PolicyError, match="expected HOST::GUEST"):
        Preopen.parse(spec)


def test_missing_preopen_dir_is_a_policy_error(
    host: WasmHost, guest: Callable[[str], bytes], tmp_path: Path
) -> None:
    policy = SandboxPolicy(preopens=(Preopen(tmp_path / "nope", "/x"),))
    with pytest.raises(PolicyError, match="nope: no such directory"):
        host.run(guest("fs"), policy)
    (tmp_path / "file").write_text("")
    policy = SandboxPolicy(preopens=(Preopen(tmp_path / "file", "/x"),))
    with pytest.raises(PolicyError, match="file: not a directory"):
        host.run(guest("fs"), policy)


def test_a_docker_style_single_colon_dir_hints_at_two() -> None:
    with pytest.raises(PolicyError, match=r"did you mean '\./data::/data'\?"):
        Preopen.parse("./data:/data")
    with pytest.raises(PolicyError, match=r"did you mean '\./data::/data:rw'\?"):
        Preopen.parse("./data:/data:rw")
    assert Preopen.parse("./data::/data:rw") == Preopen(Path("./data"), "/data", True)


def test_bad_env_name_is_a_policy_error(host: WasmHost, guest: Callable[[str], bytes]) -> None:
    with pytest.raises(PolicyError, match="invalid variable name"):
        host.run(guest("hello"), SandboxPolicy(env={"A=B": "x"}))
