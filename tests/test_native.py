"""The mypyc build of the hot path: present where it can be, never stale."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import time
from pathlib import Path

import pytest

from remora import native


def test_listed_modules_exist_and_import() -> None:
    for module in native.MODULES:
        assert native.source_path(module).is_file(), module
        importlib.import_module(module)


def test_hot_path_is_compiled_when_a_compiler_exists() -> None:
    # `make test` builds the extensions first, so the suite exercises the code users run.
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the proxy runs interpreted")
    assert native.compiled() == list(native.MODULES)
    for module in native.MODULES:
        loaded = importlib.import_module(module).__file__
        assert loaded is not None and not loaded.endswith(".py"), f"{module} ran from {loaded}"


def test_stale_finds_an_extension_older_than_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    source = package / "fast.py"
    source.write_text("x = 1\n")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    extension = package / ("fast" + suffix)
    extension.write_bytes(b"")
    later = time.time() + 1000  # after native.py's own mtime, which also dates every build
    os.utime(source, (later, later))
    os.utime(extension, (later + 100, later + 100))
    monkeypatch.setattr(native, "SOURCE_ROOT", tmp_path)
    monkeypatch.setattr(native, "PACKAGE_ROOT", package)
    monkeypatch.setattr(native, "MODULES", ("pkg.fast",))
    assert native.compiled() == ["pkg.fast"]
    assert native.stale() == []
    os.utime(source, (later + 200, later + 200))  # edited after the build
    assert native.stale() == ["pkg.fast"]
    os.utime(source, (later, later))
    leftover = package / ("dropped" + suffix)  # built when the module was still listed
    leftover.write_bytes(b"")
    os.utime(leftover, (later + 100, later + 100))
    assert native.stale() == ["pkg.dropped"]
    native.clean()
    assert not extension.exists() and not leftover.exists()
    assert native.compiled() == []


def test_clean_removes_the_build_directory_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make clean` used to leave build/native (mypyc's C, objects, copied extensions) behind.
    package = tmp_path / "pkg"
    package.mkdir()
    extension = package / ("fast" + importlib.machinery.EXTENSION_SUFFIXES[0])
    extension.write_bytes(b"")
    build_dir = tmp_path / "build" / "native"
    (build_dir / "c").mkdir(parents=True)
    (build_dir / "c" / "fast.c").write_text("int x;\n")
    monkeypatch.setattr(native, "SOURCE_ROOT", tmp_path)
    monkeypatch.setattr(native, "PACKAGE_ROOT", package)
    monkeypatch.setattr(native, "BUILD_DIR", build_dir)
    native.clean()
    assert not extension.exists()
    assert not build_dir.exists()
    assert (tmp_path / "build").is_dir()  # only the native build's own directory goes
