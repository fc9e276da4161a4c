"""The proxy's hot path, compiled ahead of time by mypyc from the same typed source.

Per request the data path runs a few hundred small Python operations (parser callbacks, routing,
header rules, stats). mypyc turns the listed modules into C extensions: attribute access becomes a
struct offset and calls between compiled functions skip the interpreter, which roughly halves the
proxy's user-space time per request (docs/benchmarks.md). The source stays plain Python and remains
the reference: without a build (or with a C compiler missing) the same modules run interpreted.

The extensions are built in place, next to each `.py`, so Python's import system prefers them.
An extension built from other sources than those beside it would silently run old code, so each
build records what it was made from (remora/native_stamp.py: a content hash of the compiled
modules' whole import closure, and the toolchain); `stale()` compares that with the tree, `make`
rebuilds on any difference, and the test suite and `remora proxy` refuse or warn while there is
one.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from remora import native_stamp

SOURCE_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = SOURCE_ROOT / "remora"
# Everything the build writes besides the extensions themselves (mypyc's C, setuptools' objects
# and copies), in one directory so that `clean` can remove all of it.
BUILD_DIR = SOURCE_ROOT / "build" / "native"

# The modules every proxied request runs through. Only whole modules can be compiled, and a
# compiled module can still import and call interpreted ones, so this list is only about speed.
# Left out: modules with generic dataclasses (route.domains, route.pathindex), which mypyc
# cannot build, and everything that runs only at config time.
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
    "remora.proxy.http.hcm_stats",
    "remora.proxy.http.listener",
    "remora.proxy.http.request",
    "remora.proxy.http.retry",
    "remora.proxy.http.route.actions",
    "remora.proxy.http.route.headers",
    "remora.proxy.http.route.matchers",
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
    # The intermediate files stay: mypyc rewrites only the C files whose content changed, and
    # setuptools recompiles only those, which makes a rebuild after a small edit much quicker.
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
