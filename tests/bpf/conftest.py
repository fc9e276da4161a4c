"""Fixtures for remora.bpf tests: privilege gate, fd-leak check, BPF C objects built by clang."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_privileged

PROGS = Path(__file__).parent / "progs"
CLANG_FLAGS = ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"]


def _open_fds() -> set[int]:
    # listdir's own directory fd shows up in its listing; drop numbers that are closed again.
    return {fd for fd in map(int, os.listdir("/proc/self/fd")) if _exists(fd)}


@contextlib.contextmanager
def fd_leak_check() -> Iterator[None]:
    """Fail if the body leaves a file descriptor open (kernel objects are fds), or if an owner
    was dropped without close() and only gc's finalizer released it (a ResourceWarning)."""
    gc.collect()
    before = _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaked = _open_fds() - before
    details = {fd: _target(fd) for fd in leaked}
    assert not details, f"leaked fds: {details}"
    unclosed = [str(w.message) for w in caught if "never closed" in str(w.message)]
    assert not unclosed, f"kernel objects never closed: {unclosed}"


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    with fd_leak_check():
        yield


def _target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _exists(fd: int) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True


@pytest.fixture
def bpf_root(no_fd_leak: None) -> None:
    require_privileged("bpf(2) needs CAP_BPF")


@pytest.fixture(scope="session")
def bpf_objs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compile every tests/bpf/progs/*.bpf.c once per session; name -> object path."""
    return _compile_all(PROGS, tmp_path_factory.mktemp("bpfobj"))


@pytest.fixture(scope="session")
def invalid_objs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tests/bpf/progs/invalid/*.bpf.c: objects that break a rule libbpf enforces."""
    return _compile_all(PROGS / "invalid", tmp_path_factory.mktemp("bpfinvalid"))


@pytest.fixture(scope="session")
def linked_obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/bpf/progs/linked/{one,two}.bpf.c statically linked into one object by bpftool."""
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        pytest.fail("bpftool is required to link BPF test objects (apt-get install bpftool)")
    out = tmp_path_factory.mktemp("bpflinked")
    parts = _compile_all(PROGS / "linked", out)
    linked = out / "linked.o"
    subprocess.run(
        [bpftool, "gen", "object", str(linked), str(parts["one"]), str(parts["two"])],
        check=True,
        capture_output=True,
    )
    return linked


def _compile_all(src_dir: Path, out: Path) -> dict[str, Path]:
    clang = shutil.which("clang")
    if clang is None:
        pytest.fail("clang is required to build BPF test programs (apt-get install clang)")
    objs: dict[str, Path] = {}
    for src in sorted(src_dir.glob("*.bpf.c")):
        obj = out / (src.name[: -len(".bpf.c")] + ".o")
        subprocess.run([clang, *CLANG_FLAGS, "-c", str(src), "-o", str(obj)], check=True)
        objs[obj.stem] = obj
    return objs


@pytest.fixture
def bpffs_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory on bpffs, removed afterwards."""
    from remora.bpf.pin import ensure_bpffs

    require_privileged("bpffs needs root")
    root = Path(ensure_bpffs())
    d = root / f"remora-test-{os.getpid()}-{tmp_path.name}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)
