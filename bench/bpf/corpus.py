"""Inspect and load every xdp-tools object with remora and with bpftool; print a Markdown table.

    sudo .venv/bin/python bench/bpf/corpus.py

bpftool runs in a private mount namespace with its own bpffs (xdp-tools maps pin by name).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from remora.bpf.collection import Collection  # noqa: E402
from remora.bpf.elf import read_elf  # noqa: E402
from remora.bpf.errors import BPFError  # noqa: E402

CORPUS = sorted(Path("/usr/lib/x86_64-linux-gnu/bpf").glob("*.o"))


def bpftool_loads(obj: Path) -> bool:
    script = (
        "mount -t bpf bpf /sys/fs/bpf && mkdir -p /sys/fs/bpf/o && "
        f"bpftool prog loadall {obj} /sys/fs/bpf/o >/dev/null 2>&1"
    )
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script])
    return r.returncode == 0


def main() -> None:
    print("| object | programs (type, insns) | maps | remora load | bpftool load |")
    print("| --- | --- | ---: | --- | --- |")
    for obj in CORPUS:
        spec = read_elf(obj)
        progs = ", ".join(
            f"{p.name} ({p.type.name.lower()}, {p.insn_count})" for p in spec.programs.values()
        )
        t0 = time.perf_counter()
        try:
            with Collection.load(obj):
                pass
            ours = f"ok, {(time.perf_counter() - t0) * 1e3:.0f} ms"
        except BPFError as e:
            ours = "refused: " + str(e)[:150]
        theirs = "ok" if bpftool_loads(obj) else "fails"
        print(f"| {obj.name} | {progs} | {len(spec.maps)} | {ours} | {theirs} |")


if __name__ == "__main__":
    main()
