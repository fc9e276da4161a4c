"""The external corpus: every object xdp-tools ships must inspect and load like libbpf loads it.

bpftool (libbpf) is the reference. It runs in a private mount namespace with its own bpffs so
its pins (xdp-tools maps are LIBBPF_PIN_BY_NAME) never touch the host's /sys/fs/bpf.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from remora.bpf.collection import Collection
from remora.bpf.elf import read_elf
from remora.bpf.errors import BPFLoadError
from remora.bpf.sys.types import MapType, ProgType

CORPUS = sorted(Path("/usr/lib/x86_64-linux-gnu/bpf").glob("*.o"))
# fentry/fexit "func": the target is chosen at attach time (their CO-RE relocations resolve).
NEEDS_ATTACH = {"xdpdump_bpf.o"}

_BPFTOOL_SCRIPT = r"""
set -e
mount -t bpf bpf /sys/fs/bpf
mkdir -p /sys/fs/bpf/o
bpftool prog loadall "$1" /sys/fs/bpf/o >/dev/null 2>&1 || { echo '{"error": "load"}'; exit 0; }
for p in /sys/fs/bpf/o/*; do bpftool -j prog show pinned "$p"; echo; done
"""


def bpftool_view(obj: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]] | None:
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", _BPFTOOL_SCRIPT, "x", str(obj)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    progs = [json.loads(line) for line in out.splitlines() if line.strip()]
    if progs and "error" in progs[0]:
        return None
    ids = sorted({i for p in progs for i in p.get("map_ids", [])})
    maps = []
    for i in ids:
        r = subprocess.run(["bpftool", "-j", "map", "show", "id", str(i)], capture_output=True)
        if r.returncode == 0:  # the map may already be gone with its program
            maps.append(json.loads(r.stdout))
    return progs, maps


@pytest.fixture(scope="module")
def have_tools() -> None:
    if not CORPUS:
        pytest.fail("xdp-tools BPF objects missing (apt-get install xdp-tools)")
    for tool in ("bpftool", "unshare"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required for the corpus comparison")


@pytest.mark.parametrize("obj", CORPUS, ids=[p.name for p in CORPUS])
def test_inspect_matches_sections(obj: Path) -> None:
    spec = read_elf(obj)
    assert spec.programs, f"{obj.name}: no programs found"
    assert spec.license == "GPL"
    for p in spec.programs.values():
        assert p.insn_count > 0 and p.type != ProgType.UNSPEC


@pytest.mark.parametrize("obj", CORPUS, ids=[p.name for p in CORPUS])
def test_load_matches_bpftool(obj: Path, have_tools: None, bpf_root: None) -> None:
    ref = bpftool_view(obj)
    if obj.name in NEEDS_ATTACH:
        assert ref is None, "bpftool now loads this object; update NEEDS_ATTACH"
        with pytest.raises(BPFLoadError, match=r"only an attach can provide"):
            Collection.load(obj)
        return
    assert ref is not None, f"bpftool could not load {obj.name}"
    ref_progs, ref_maps = ref
    with Collection.load(obj) as c:
        ours_p = {p.info().name.decode(): p for p in c.programs.values()}
        assert sorted(ours_p) == sorted(str(p["name"]) for p in ref_progs)
        for rp in ref_progs:
            mine = ours_p[str(rp["name"])]
            assert mine.type == ProgType[str(rp["type"]).upper()]
            info = mine.info()
            # The kernel's tag hashes the instructions (map fds masked): equal tags mean our
            # linking of subprograms and relocations produced exactly libbpf's program.
            assert bytes(info.tag).hex() == rp["tag"], f"{obj.name}: {rp['name']} differs"
            assert info.xlated_prog_len == rp["bytes_xlated"]
            # BTF went to the kernel with the program, line_info included (source lines).
            assert info.btf_id != 0 and info.nr_line_info > 0 and info.nr_func_info > 0
        ours_m = {m.info().name.decode(): m for m in c.maps.values()}
        for rm in ref_maps:
            name = str(rm["name"])
            # libbpf names data maps "<obj prefix>.<section>"; ours keep the section name
            key = name if name in ours_m else "." + name.split(".", 1)[-1]
            assert key in ours_m, f"{obj.name}: map {name} missing (ours: {sorted(ours_m)})"
            m = ours_m[key]
            assert m.type == MapType[str(rm["type"]).upper()], name
            assert (m.key_size, m.value_size, m.max_entries) == (
                rm["bytes_key"],
                rm["bytes_value"],
                rm["max_entries"],
            ), name
