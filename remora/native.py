"""The proxy's hot path, compiled ahead of time by mypyc from the same typed source.

Per request the data path runs a few hundred small Python operations (parser callbacks, routing,
header rules, stats). mypyc turns the listed modules into C extensions: attribute access becomes a
struct offset and calls between compiled functions skip the interpreter, which roughly halves the
proxy's user-space time per request (docs/benchmarks.md). The source stays plain Python and remains
the reference: without a build (or with a C compiler missing) the same modules run interpreted.

The extensions are built in place, next to each `.py`, so Python's import system prefers them.
A compiled module older than its source would silently run old code, so `stale()` finds those,
`make` rebuilds them, and the test suite and `remora proxy` refuse or warn about them.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_ROOT.parent

# The modules every proxied request runs through. Only whole modules can be compiled, and a
# compiled module can still import and call interpreted ones, so this list is only about speed.
MODULES: tuple[str, ...] = (
    "remora.proxy.http.body",
    "remora.proxy.http.downstream",
    "remora.proxy.http.exchange",
    "remora.proxy.http.forwarding",
    "remora.proxy.http.h1_codec",
    "remora.proxy.http.request",
    "remora.proxy.stats.histogram",
    "remora.proxy.stats.metrics",
    "remora.proxy.upstream.h1_connection",
    "remora.proxy.upstream.pool",
)

# All listed modules share one C library (a mypyc "group"); its name is inside the package so the
# editable install's import finder, which maps only `remora`, can find it.
GROUP = "remora.native_group"


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


def compiled() -> list[str]:
    """Listed modules that have a compiled extension next to their source."""
    return [module for module in MODULES if extension_paths(module)]


def stale() -> list[str]:
    """Compiled modules whose source changed after they were built (they would run old code)."""
    result = []
    for module in MODULES:
        source_mtime = source_path(module).stat().st_mtime
        if any(path.stat().st_mtime < source_mtime for path in extension_paths(module)):
            result.append(module)
    return result


def clean() -> None:
    for module in MODULES:
        for path in extension_paths(module):
            path.unlink()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        shared = SOURCE_ROOT / (GROUP.replace(".", "/") + "__mypyc" + suffix)
        shared.unlink(missing_ok=True)


def build(force: bool = False) -> int:
    """Compile the listed modules in place unless every extension is newer than its source."""
    if not force and len(compiled()) == len(MODULES) and not stale():
        return 0
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        print("remora.native: no C compiler; the proxy runs interpreted", file=sys.stderr)
        return 0
    clean()
    # setuptools drives the C compiler; mypyc type-checks the whole program first, so a module
    # that does not pass `mypy --strict` does not compile either.
    script = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        "paths = sys.argv[1:]\n"
        "sys.argv = [sys.argv[0], 'build_ext', '--inplace', '--build-temp', 'build/native']\n"
        f"setup(name='remora-native', ext_modules=mypycify(paths, group_name={GROUP!r}))\n"
    )
    paths = [str(source_path(module).relative_to(SOURCE_ROOT)) for module in MODULES]
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, *paths],
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        clean()  # half a build would shadow sources with a mix of old and new code
        print("remora.native: mypyc build failed; the proxy runs interpreted", file=sys.stderr)
        return done.returncode
    return 0


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
    return 1 if old else 0


if __name__ == "__main__":
    sys.exit(main())
