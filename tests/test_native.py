"""The mypyc build of the hot path: present where it can be, never stale."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remora import native, native_stamp


def test_listed_modules_exist_and_import() -> None:
    for module in native.MODULES:
        assert native.source_path(module).is_file(), module
        importlib.import_module(module)


def test_hot_path_runs_as_the_mode_says() -> None:
    # `make pytest` runs the suite on the build (`make test` builds it first, so the suite
    # exercises the code users run); `make pytest-interpreted` runs this file and tests/proxy
    # again with REMORA_NATIVE=0, on the source the build is made from.
    if native.interpreted():
        for module in native.MODULES:
            loaded = importlib.import_module(module).__file__
            assert loaded is not None and loaded.endswith(".py"), f"{module} ran from {loaded}"
        assert native.loaded_extensions() == []
        assert native.GROUP + "__mypyc" not in sys.modules
        return
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the proxy runs interpreted")
    assert native.compiled() == list(native.MODULES)
    for module in native.MODULES:
        loaded = importlib.import_module(module).__file__
        assert loaded is not None and not loaded.endswith(".py"), f"{module} ran from {loaded}"


_PROBE = """
import importlib, importlib.util, json, sys
from remora import native
files = {m: importlib.import_module(m).__file__ for m in native.MODULES}
import remora.proxy.server  # the rest of the proxy, which imports the hot path its own way
refused = []
for module in native.MODULES if native.interpreted() else ():
    for path in native.extension_paths(module):  # loaded by its path, bypassing every finder
        spec = importlib.util.spec_from_file_location(module, path)
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except ImportError as exc:
            refused.append(str(exc))
print(json.dumps({"files": files, "extensions": native.loaded_extensions(), "refused": refused}))
"""


def _probe(native_env: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != native.ENV}
    if native_env is not None:
        env[native.ENV] = native_env
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        cwd=native.SOURCE_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_remora_native_0_runs_the_source_and_refuses_compiled_code() -> None:
    # Run in both modes of the suite: the switch itself is checked in a fresh process.
    result = _probe("0")
    for module, loaded in result["files"].items():
        assert loaded.endswith(".py"), f"{module} ran from {loaded}"
    assert result["extensions"] == []
    if native.compiled():
        # Even an extension loaded by its path fails: the library they all share is refused.
        assert len(result["refused"]) == len(native.compiled())
        assert all(f"not loaded with {native.ENV}=0" in reason for reason in result["refused"])


def test_without_remora_native_the_build_runs() -> None:
    if native.compiled() != list(native.MODULES):
        pytest.skip("no complete build here: `make native`")
    result = _probe(None)
    assert sorted(result["extensions"]) == sorted([*native.MODULES, native.GROUP + "__mypyc"])
    for module, loaded in result["files"].items():
        assert not loaded.endswith(".py"), f"{module} ran from {loaded}"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package of its own with one compiled module, `pkg.fast`, that imports interpreted ones
    in every way the closure must follow; builds are faked (no C), the records are real."""
    package = tmp_path / "pkg"
    package.mkdir()
    files = {
        "__init__.py": "UTIL = 1\n",
        "fast.py": (
            "from typing import TYPE_CHECKING\n"
            "from pkg import helper\n"
            "from pkg import UTIL\n"
            "from . import rel\n"
            "if TYPE_CHECKING:\n"
            "    import pkg.typed\n"
        ),
        "helper.py": "X = 1\n",
        "rel.py": "Y = 1\n",
        "typed.py": "Z = 1\n",
        "other.py": "W = 1\n",  # imported by nothing the compiled module reaches
    }
    for name, text in files.items():
        (package / name).write_text(text)
    (tmp_path / "pyproject.toml").write_text("[tool.mypy]\nstrict = true\n")
    monkeypatch.setattr(native, "SOURCE_ROOT", tmp_path)
    monkeypatch.setattr(native, "PACKAGE_ROOT", package)
    monkeypatch.setattr(native, "BUILD_DIR", tmp_path / "build" / "native")
    monkeypatch.setattr(native, "MODULES", ("pkg.fast",))
    monkeypatch.setattr(native, "_have_compiler", lambda: True)
    monkeypatch.setattr(native, "_compile", _fake_compile)
    return tmp_path


def _extension(root: Path, module: str) -> Path:
    return root / (module.replace(".", "/") + importlib.machinery.EXTENSION_SUFFIXES[0])


def _fake_compile(paths: list[str]) -> int:
    for path in paths:
        _extension(native.SOURCE_ROOT, path.removesuffix(".py").replace("/", ".")).write_bytes(b"")
    return 0


def test_a_fresh_build_is_a_no_op(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def counting(paths: list[str]) -> int:
        calls.append(paths)
        return _fake_compile(paths)

    monkeypatch.setattr(native, "_compile", counting)
    assert native.build() == 0
    assert calls == [["pkg/fast.py"]]
    assert native.compiled() == ["pkg.fast"]
    assert native.stale() == []
    assert native.build() == 0
    assert len(calls) == 1
    (tree / "pkg" / "helper.py").write_text("X = 2\n")
    assert native.build() == 0
    assert len(calls) == 2
    assert native.stale() == []


@pytest.mark.parametrize(
    "edited",
    [
        "pkg/fast.py",  # the compiled module itself
        "pkg/helper.py",  # an interpreted module it imports: the old mtime rule missed this
        "pkg/rel.py",  # imported relatively
        "pkg/typed.py",  # imported only for the type checker, which mypyc is
        "pkg/__init__.py",  # its package, which runs first and which it imports a name from
        "pyproject.toml",  # the mypy settings mypyc compiles under
    ],
)
def test_an_edit_to_any_input_makes_the_build_stale(tree: Path, edited: str) -> None:
    assert native.build() == 0
    path = tree / edited
    original = path.read_text()
    path.write_text(original + "EDITED = True\n")
    assert native.stale() == ["pkg.fast"]
    assert native.changed_inputs() == [edited]
    path.write_text(original)  # the same content again, though newer: fresh by content
    assert native.stale() == []


def test_an_edit_outside_the_import_closure_leaves_the_build_fresh(tree: Path) -> None:
    assert native.build() == 0
    (tree / "pkg" / "other.py").write_text("W = 2\n")
    assert native.stale() == []


def test_touching_without_editing_leaves_the_build_fresh(tree: Path) -> None:
    # The old rule called this stale (source newer than extension) and would rebuild.
    assert native.build() == 0
    later = time.time() + 1000
    for name in ("fast.py", "helper.py"):
        os.utime(tree / "pkg" / name, (later, later))
    os.utime(_extension(tree, "pkg.fast"), (0, 0))
    assert native.stale() == []


def test_a_file_an_import_would_now_read_makes_the_build_stale(tree: Path) -> None:
    # `from pkg import UTIL` read the package's attribute; a module of that name would win.
    assert native.build() == 0
    (tree / "pkg" / "UTIL.py").write_text("")
    assert native.stale() == ["pkg.fast"]
    assert native.changed_inputs() == ["pkg/UTIL.py (new)"]


def test_a_removed_input_makes_the_build_stale(tree: Path) -> None:
    assert native.build() == 0
    (tree / "pkg" / "rel.py").unlink()
    assert native.changed_inputs() == ["pkg/rel.py (removed)"]


def test_a_toolchain_change_makes_the_build_stale(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert native.build() == 0
    tools = native_stamp.toolchain()
    monkeypatch.setattr(native_stamp, "toolchain", lambda: {**tools, "mypy": "99.0"})
    assert native.stale() == ["pkg.fast"]
    assert native.changed_inputs() == [f"mypy {tools['mypy']} -> 99.0"]


def test_only_a_toolchain_change_compiles_everything_afresh(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert native.build() == 0
    kept = native.BUILD_DIR / "c" / "fast.c"  # what setuptools would not recompile
    kept.parent.mkdir(parents=True)
    kept.write_text("")
    (tree / "pkg" / "helper.py").write_text("X = 5\n")
    assert native.build() == 0
    assert kept.exists()
    tools = native_stamp.toolchain()
    monkeypatch.setattr(native_stamp, "toolchain", lambda: {**tools, "mypy": "99.0"})
    assert native.build() == 0
    assert not kept.exists()
    assert native.stale() == []


def test_an_extension_without_a_record_of_its_build_is_stale(tree: Path) -> None:
    assert native.build() == 0
    native.stamp_path().write_text("{not json")
    assert native.stale() == ["pkg.fast"]
    native.stamp_path().unlink()
    assert native.stale() == ["pkg.fast"]
    assert native.build() == 0
    assert native.stale() == []


def test_an_edit_made_during_the_build_is_rebuilt_next_time(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edited_meanwhile(paths: list[str]) -> int:
        (tree / "pkg" / "helper.py").write_text("X = 3\n")  # after the inputs were read
        return _fake_compile(paths)

    monkeypatch.setattr(native, "_compile", edited_meanwhile)
    assert native.build() == 0
    assert native.stale() == ["pkg.fast"]
    monkeypatch.setattr(native, "_compile", _fake_compile)
    assert native.build() == 0
    assert native.stale() == []


def test_an_extension_of_a_module_no_longer_listed_is_stale(tree: Path) -> None:
    assert native.build() == 0
    _extension(tree, "pkg.dropped").write_bytes(b"")
    assert native.stale() == ["pkg.dropped"]


def test_a_failed_build_leaves_nothing_compiled(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(paths: list[str]) -> int:
        _fake_compile(paths)  # part of the build had been copied in place
        return 1

    monkeypatch.setattr(native, "_compile", failing)
    assert native.build() == 1
    assert native.compiled() == []
    assert not native.stamp_path().exists()


def test_status_reports_by_the_same_rule(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert native.main(["status"]) == 0
    assert capsys.readouterr().out.split() == ["source", "pkg.fast"]
    assert native.build() == 0
    assert native.main(["status"]) == 0
    assert capsys.readouterr().out.split() == ["compiled", "pkg.fast"]
    (tree / "pkg" / "helper.py").write_text("X = 4\n")
    assert native.main(["status"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "stale     pkg.fast",
        "changed since the build: pkg/helper.py",
    ]


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
