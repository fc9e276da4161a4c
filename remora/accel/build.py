"""Build the mesh's BPF objects with clang, reproducibly, and find them at run time.

The same source must give the same bytes wherever it is built. `-g` records the build
directory and source paths, so clang runs inside the source directory, and that directory
is renamed to a fixed name with `-ffile-prefix-map`. Nothing else in clang's output depends
on where or when it ran, and tests/accel/test_build.py checks that by building in two places
and comparing.

`python -m remora.accel.build [OUT_DIR]` is what `make accel` runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from remora.bpf.errors import BPFError

SOURCES = Path(__file__).resolve().parent / "bpf"
BUILD = Path(__file__).resolve().parent / "build"
PROGRAMS = ("tcp_telemetry",)
_INCLUDE = "/usr/include/x86_64-linux-gnu"


def flags(source: Path) -> list[str]:
    return [
        "-O2",
        "-g",
        "-target",
        "bpf",
        f"-I{_INCLUDE}",
        "-Wall",
        "-Werror",
        f"-ffile-prefix-map={source.parent}=remora/accel/bpf",
    ]


def build(name: str, out_dir: Path = BUILD) -> Path:
    """Compile one program; returns the object's path."""
    clang = shutil.which("clang")
    if clang is None:
        raise BPFError("clang is needed to build remora's BPF programs (make apt installs it)")
    source = SOURCES / f"{name}.bpf.c"
    out_dir.mkdir(parents=True, exist_ok=True)
    obj = out_dir / f"{name}.bpf.o"
    # Compiled from inside the source directory, so the compilation directory that -g
    # records is the same wherever the build was started (and then renamed by the map).
    done = subprocess.run(
        [clang, *flags(source), "-c", source.name, "-o", str(obj.resolve())],
        capture_output=True,
        text=True,
        cwd=source.parent,
    )
    if done.returncode != 0:
        raise BPFError(f"clang failed on {source}:\n{done.stderr.strip()}")
    return obj


def object_path(name: str) -> Path:
    """The built object, or a clear error saying how to build it."""
    obj = BUILD / f"{name}.bpf.o"
    if not obj.exists():
        raise BPFError(f"{obj} is not built: run `make accel`")
    source = SOURCES / f"{name}.bpf.c"
    if source.stat().st_mtime > obj.stat().st_mtime:
        raise BPFError(f"{obj} is older than {source}: run `make accel`")
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remora.accel.build")
    parser.add_argument("out", nargs="?", type=Path, default=BUILD, help="output directory")
    args = parser.parse_args(argv)
    for name in PROGRAMS:
        print(build(name, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
