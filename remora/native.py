"""The proxy's hot path, compiled ahead of time by mypyc from the same typed source.

Per request the data path runs a few hundred small Python operations (parser callbacks, routing,
header rules, stats). mypyc turns the listed modules into C extensions: attribute access becomes a
struct offset and calls between compiled functions skip the interpreter, which roughly halves the
proxy's user-space time per request (docs/benchmarks.md). The source stays plain Python and remains
the reference: without a build (or with a C compiler missing) the same modules run interpreted.

The extensions are built in place, next to each `.py`, so Python's import system prefers them.
`REMORA_NATIVE=0` makes a process load the source anyway (`use_source`, called by the package's
`__init__` before any submodule loads), which is how the tests check that promise on a machine
that has a build.

An extension built from other sources than those beside it would silently run old code, so each
build records what it was made from (remora/native_stamp.py: a content hash of the compiled
modules' whole import closure, and the toolchain); `stale()` compares that with the tree, `make`
rebuilds on any difference, and the test suite and `remora proxy` refuse or warn while there is
one.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from remora import native_stamp

SOURCE_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = SOURCE_ROOT / "remora"
# Everything the build writes besides the extensions themselves (mypyc's C, setuptools' objects
# and copies), in one directory so that `clean` can remove all of it.
BUILD_DIR = SOURCE_ROOT / "build" / "native"

# The modules every proxied request runs through. Only whole modules can be compiled, and a
# compiled module can still import and call interpreted ones, so this list is only about speed.
# Left out: everything that runs only at config time. (mypyc cannot build generic slotted
# dataclasses, so the generic per-request lookups are plain classes with __slots__.)
MODULES: tuple[str, ...] = (
    "remora.proxy.accesslog.formatter",
    "remora.proxy.accesslog.logger",
    "remora.proxy.accesslog.operators",
    "remora.proxy.accesslog.record",
    "remora.proxy.http.authority",
    "remora.proxy.http.body",
    "remora.proxy.http.config",
    "remora.proxy.http.downstream",
    "remora.proxy.http.exchange",
    "remora.proxy.http.forwarding",
    "remora.proxy.http.h1_codec",
    "remora.proxy.http.h2_downstream",
    "remora.proxy.http.h2_outbound",
    "remora.proxy.http.h2_stream",
    "remora.proxy.http.hcm_stats",
    "remora.proxy.http.listener",
    "remora.proxy.http.request",
    "remora.proxy.http.retry",
    "remora.proxy.http.route.actions",
    "remora.proxy.http.route.domains",
    "remora.proxy.http.route.headers",
    "remora.proxy.http.route.matchers",
    "remora.proxy.http.route.pathindex",
    "remora.proxy.http.route.retry_rules",
    "remora.proxy.http.route.table",
    "remora.proxy.listener_stats",
    "remora.proxy.response_flags",
    "remora.proxy.stats.group",
    "remora.proxy.stats.histogram",
    "remora.proxy.stats.metrics",
    "remora.proxy.tcp.proxy",
    "remora.proxy.upstream.cluster",
    "remora.proxy.upstream.config",
    "remora.proxy.upstream.h1_connection",
    "remora.proxy.upstream.h2_pool",
    "remora.proxy.upstream.h2_upstream",
    "remora.proxy.upstream.h2_upstream_stream",
    "remora.proxy.upstream.lb",
    "remora.proxy.upstream.pool",
)

# All listed modules share one C library (a mypyc "group"); its name is inside the package so the
# editable install's import finder, which maps only `remora`, can find it.
GROUP = "remora.native_group"


# "0": run interpreted though a build exists; "1" or unset: the build when there is one.
ENV = "REMORA_NATIVE"


def interpreted() -> bool:
    """Whether this process was asked to run every module from its source."""
    return os.environ.get(ENV) == "0"


def apply_env() -> None:
    """Honour REMORA_NATIVE; the package's `__init__` calls this, since a module already
    imported compiled would stay compiled."""
    value = os.environ.get(ENV)
    if value == "0":
        use_source()
    elif value not in (None, "", "1"):
        warnings.warn(
            f"{ENV}={value!r} is neither 0 nor 1; the build runs", RuntimeWarning, stacklevel=2
        )


class SourceOnlyFinder(importlib.abc.MetaPathFinder):
    """Finds each remora module's source ahead of the path finder, which would prefer an
    extension beside it, and refuses the compiled group library that every extension loads
    first: no compiled code can run, even through a path this finder does not cover."""

    def __init__(self) -> None:
        self._finders: dict[str, importlib.machinery.FileFinder] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == GROUP + "__mypyc":
            raise ImportError(
                f"{fullname}: compiled code is not loaded with {ENV}=0", name=fullname
            )
        if path is None or not fullname.startswith(PACKAGE_ROOT.name + "."):
            return None
        for entry in path:
            finder = self._finders.get(entry)
            if finder is None:
                loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
                finder = self._finders[entry] = importlib.machinery.FileFinder(entry, loader)
            spec = finder.find_spec(fullname, target)
            if spec is not None and spec.loader is not None:  # not a namespace portion
                return spec
        return None


def use_source() -> None:
    """Load every remora module imported from now on from its source."""
    if not any(isinstance(finder, SourceOnlyFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourceOnlyFinder())


def source_path(module: str) -> Path:
    return SOURCE_ROOT / (module.replace(".", "/") + ".py")


def extension_paths(module: str) -> list[Path]:
    """Compiled files for `module` that the import system would load instead of its source."""
    base = SOURCE_ROOT / module.replace(".", "/")
    return [
        base.with_name(base.name + suffix)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if base.with_name(base.name + suffix).exists()
    ]


def loaded_extensions() -> list[str]:
    """remora modules this process has loaded compiled."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.split(".", 1)[0] == PACKAGE_ROOT.name
        and str(getattr(module, "__file__", None) or "").endswith(
            tuple(importlib.machinery.EXTENSION_SUFFIXES)
        )
    )


def compiled() -> list[str]:
    """Listed modules that have a compiled extension next to their source."""
    return [module for module in MODULES if extension_paths(module)]


def stamp_path() -> Path:
    return BUILD_DIR / "stamp.json"


def _extra_inputs() -> list[str]:
    """Files the build reads besides modules: this one (the module list and build script) and
    pyproject.toml, whose [tool.mypy] settings mypyc compiles under."""
    return [f"{PACKAGE_ROOT.name}/native.py", "pyproject.toml"]


def changed_inputs() -> list[str]:
    """What differs, by content, from what the present build was made from (empty: nothing)."""
    try:
        text = stamp_path().read_text()
    except OSError:
        return ["no record of what the build was made from"]
    stamp = native_stamp.Stamp.from_json(text)
    if stamp is None:
        return [f"{stamp_path()} is not a record this version wrote"]
    return native_stamp.changes(stamp, SOURCE_ROOT)


def stale() -> list[str]:
    """Compiled modules that may run other code than their source says: all of them when any
    input of the build has changed since, and any left over from a module no longer listed."""
    built = sorted({_module_of(path) for path in _all_extensions()} - {GROUP + "__mypyc"})
    if not built:
        return []
    if changed_inputs():
        return built
    listed = set(MODULES)
    return [module for module in built if module not in listed]


def stale_summary() -> str:
    """One line for a warning or refusal: which compiled modules are stale, and why."""
    old = stale()
    names = ", ".join(old) if len(old) <= 3 else f"{len(old)} modules"
    changes = changed_inputs() or ["their modules are no longer listed"]
    shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
    return f"{names} (changed since the build: {shown})"


def _all_extensions() -> list[Path]:
    found: list[Path] = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        found.extend(PACKAGE_ROOT.rglob("*" + suffix))
    return sorted(set(found))


def _module_of(path: Path) -> str:
    relative = path.relative_to(SOURCE_ROOT)
    name = relative.name.split(".", 1)[0]
    return ".".join((*relative.parent.parts, name))


def clean() -> None:
    """Remove everything the build made: the extensions (only it puts them in the package) and
    its intermediate files."""
    _remove_extensions()
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def _remove_extensions() -> None:
    for path in _all_extensions():
        path.unlink()


def build(force: bool = False) -> int:
    """Compile the listed modules in place unless the present build was made from what is
    there now (`stale()`)."""
    if not force and compiled() == list(MODULES) and not stale():
        return 0
    if not _have_compiler():
        print("remora.native: no C compiler; the proxy runs interpreted", file=sys.stderr)
        return 0
    # Read before compiling: an edit made while mypyc runs then differs from the record, so the
    # next build redoes it.
    inputs = native_stamp.take(SOURCE_ROOT, MODULES, _extra_inputs())
    # The intermediate files stay while the toolchain does: mypyc rewrites only the C files
    # whose content changed, and setuptools recompiles only those (by their mtimes), which makes
    # a rebuild after a small edit take seconds. A new mypy can change headers that setuptools
    # does not track, so then, and on `rebuild`, everything is compiled afresh.
    if force or _recorded_toolchain() != inputs.toolchain:
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
    _remove_extensions()
    stamp_path().unlink(missing_ok=True)
    done = _compile([str(source_path(module).relative_to(SOURCE_ROOT)) for module in MODULES])
    if done != 0:
        _remove_extensions()  # half a build would shadow sources with a mix of old and new code
        print("remora.native: mypyc build failed; the proxy runs interpreted", file=sys.stderr)
        return done
    written = stamp_path().with_suffix(".tmp")
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(inputs.to_json())
    written.replace(stamp_path())
    return 0


def _recorded_toolchain() -> dict[str, str] | None:
    try:
        stamp = native_stamp.Stamp.from_json(stamp_path().read_text())
    except OSError:
        return None
    return None if stamp is None else stamp.toolchain


def _have_compiler() -> bool:
    return shutil.which("cc") is not None or shutil.which("gcc") is not None


def _compile(paths: list[str]) -> int:
    """Run mypyc and the C compiler on `paths` (relative to the source root) in a child, whose
    exit status this returns."""
    # setuptools drives the C compiler; mypyc type-checks the whole program first, so a module
    # that does not pass `mypy --strict` does not compile either.
    script = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        "target, group, paths = sys.argv[1], sys.argv[2], sys.argv[3:]\n"
        "sys.argv = [sys.argv[0], 'build_ext', '--inplace',\n"
        "            '--build-temp', target + '/temp', '--build-lib', target + '/lib']\n"
        "modules = mypycify(paths, group_name=group, target_dir=target + '/c')\n"
        "setup(name='remora-native', ext_modules=modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, str(BUILD_DIR), GROUP, *paths],
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remora.native", description=__doc__)
    parser.add_argument("action", choices=("build", "rebuild", "clean", "status"))
    args = parser.parse_args(argv)
    if args.action in ("build", "rebuild"):
        return build(force=args.action == "rebuild")
    if args.action == "clean":
        clean()
        return 0
    old = stale()
    for module in MODULES:
        state = "stale" if module in old else "compiled" if extension_paths(module) else "source"
        print(f"{state:9} {module}")
    for module in sorted(set(old) - set(MODULES)):
        print(f"{'stale':9} {module} (no longer listed)")
    if old:
        for change in changed_inputs():
            print(f"changed since the build: {change}")
    return 1 if old else 0


if __name__ == "__main__":
    sys.exit(main())
