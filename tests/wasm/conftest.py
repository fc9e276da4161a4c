"""Guest modules compiled once per test session from the sources in guests/.

C guests go through `clang --target=wasm32-wasi` with Debian's wasi-libc sysroot (/usr), WAT
guests through wabt's `wat2wasm`; the .wasm outputs live only in a pytest temp dir.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

GUESTS = Path(__file__).parent / "guests"
WASI_SYSROOT = "/usr"


def compile_c(source: Path, out: Path, extra: tuple[str, ...] = ()) -> Path:
    clang = shutil.which("clang")
    if clang is None:
        pytest.fail("clang is required to build the C Wasm guests (make apt installs it)")
    cmd = [clang, "--target=wasm32-wasi", f"--sysroot={WASI_SYSROOT}", "-O2", "-Wall", "-Werror"]
    subprocess.run([*cmd, *extra, str(source), "-o", str(out)], check=True)
    return out


def compile_wat(source: Path, out: Path) -> Path:
    wat2wasm = shutil.which("wat2wasm")
    if wat2wasm is None:
        pytest.fail("wat2wasm (wabt) is required to build the WAT guests")
    subprocess.run([wat2wasm, "--debug-names", str(source), "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def guest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wasm-guests")


@pytest.fixture(scope="session")
def guest(guest_dir: Path) -> Callable[[str], bytes]:
    """guest("hello") -> bytes of hello.wasm, built from hello.c or hello.wat on first use."""
    built: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in built:
            out = guest_dir / f"{name}.wasm"
            c_source, wat_source = GUESTS / f"{name}.c", GUESTS / f"{name}.wat"
            if c_source.exists():
                compile_c(c_source, out)
            else:
                compile_wat(wat_source, out)
            built[name] = out.read_bytes()
        return built[name]

    return get


@pytest.fixture(scope="session")
def guest_path(guest: Callable[[str], bytes], guest_dir: Path) -> Callable[[str], Path]:
    def get(name: str) -> Path:
        guest(name)
        return guest_dir / f"{name}.wasm"

    return get
