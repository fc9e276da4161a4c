"""Objects from every clang on this machine must load and behave the same.

Section layout and relocation style differ between clang releases (for example how calls to
static functions and data references are relocated), so the loader must not depend on one.
CI installs Debian's clang 14; any other `clang-NN` found on PATH is exercised too.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from remora.bpf.collection import Collection
from tests.bpf.conftest import CLANG_FLAGS, PROGS

pytestmark = pytest.mark.usefixtures("bpf_root")


def _compilers() -> dict[str, str]:
    found: dict[str, str] = {}
    candidates = [shutil.which("clang") or ""]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        candidates += glob.glob(os.path.join(d, "clang-[0-9]*"))
    for path in candidates:
        if not path or not re.fullmatch(r"clang(-\d+)?", os.path.basename(path)):
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"clang version (\d+)", out)
        if m and m.group(1) not in found:
            found[m.group(1)] = path
    return found


COMPILERS = _compilers()
PKT = bytes([10, 0, 0, 1]) + bytes(60)


@pytest.fixture(scope="module", params=sorted(COMPILERS), ids=lambda v: f"clang{v}")
def objs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    cc = COMPILERS[request.param]
    out = tmp_path_factory.mktemp(f"clang{request.param}")
    built = {}
    for name in ("globals", "legacy", "tailcalls", "verifier_fail"):
        obj = out / f"{name}.o"
        src = PROGS / f"{name}.bpf.c"
        subprocess.run([cc, *CLANG_FLAGS, "-c", str(src), "-o", str(obj)], check=True)
        built[name] = obj
    return built


def test_globals_subprograms_and_constants(objs: dict[str, Path]) -> None:
    with Collection.load(objs["globals"], constants={"verdict": 1}) as c:
        assert c.programs["xdp_count"].test_run(PKT, repeat=2).retval == 1
        assert c.maps["counters"][0] == 10
        assert int.from_bytes(c.variable("hits"), "little") == 9
        assert c.programs["xdp_magic"].test_run(PKT).retval == 2


def test_legacy_maps_and_tail_calls(objs: dict[str, Path]) -> None:
    with Collection.load(objs["legacy"]) as c:
        c.programs["legacy_prog"].test_run(PKT)
        assert c.maps["legacy_hash"][1] == 1
    with Collection.load(objs["tailcalls"]) as c:
        assert c.programs["tail_entry"].test_run(PKT).retval == 3


def test_verifier_line(objs: dict[str, Path]) -> None:
    from remora.bpf.errors import VerifierError

    with pytest.raises(VerifierError) as ei:
        Collection.load(objs["verifier_fail"])
    assert ei.value.source is not None and "FAIL_HERE" in ei.value.source


@pytest.mark.parametrize("name", ["globals", "tailcalls"])
def test_programs_are_identical_to_libbpf(objs: dict[str, Path], name: str) -> None:
    """Subprogram placement, call offsets and map/data relocations: the kernel's tag (a hash
    of the instructions with map fds masked) must equal what bpftool (libbpf) loads."""
    from tests.bpf.test_corpus import bpftool_view

    ref = bpftool_view(objs[name])
    assert ref is not None, f"bpftool could not load {name}"
    with Collection.load(objs[name]) as c:
        ours = {p.info().name.decode(): p.info() for p in c.programs.values()}
        assert sorted(ours) == sorted(str(p["name"]) for p in ref[0])
        for rp in ref[0]:
            assert bytes(ours[str(rp["name"])].tag).hex() == rp["tag"], rp["name"]
