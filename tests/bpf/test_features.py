"""`remora bpf features` against what bpftool's probe says, and against kernel facts."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from remora.bpf.features import Features, probe

pytestmark = pytest.mark.usefixtures("bpf_root")


@pytest.fixture(scope="module")
def found() -> Features:
    return probe(helpers=True)


@pytest.fixture(scope="module")
def bpftool_says() -> dict[str, Any]:
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        pytest.fail("bpftool is required (apt-get install bpftool)")
    out = subprocess.run(
        [bpftool, "-j", "feature", "probe", "kernel"], check=True, capture_output=True, text=True
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_program_and_map_types_agree_with_bpftool(
    found: Features, bpftool_says: dict[str, Any]
) -> None:
    compared = 0
    for table, key in ((found.program_types, "program_types"), (found.map_types, "map_types")):
        suffix = "_prog_type" if key == "program_types" else "_map_type"
        for name, state in table.items():
            theirs = bpftool_says[key].get(f"have_{name}{suffix}")
            if theirs is None or state == "needs a target":
                continue  # a type this bpftool predates, or one only an attach target proves
            assert (state == "yes") == theirs, f"{key} {name}: remora {state}, bpftool {theirs}"
            compared += 1
    assert compared >= 55


def test_helpers_follow_the_kernels_rules(found: Features) -> None:
    helpers = found.helpers
    assert "bpf_map_lookup_elem" in helpers["socket_filter"]
    assert "bpf_xdp_adjust_head" in helpers["xdp"]
    assert "bpf_xdp_adjust_head" not in helpers["socket_filter"]
    assert "bpf_skb_store_bytes" in helpers["sched_cls"]
    assert "bpf_skb_store_bytes" not in helpers["socket_filter"]
    assert "bpf_sys_bpf" in helpers["syscall"]
    assert "bpf_sys_bpf" not in helpers["xdp"]
    assert all(len(names) > 50 for names in helpers.values())


def test_link_types_are_the_kernels(found: Features) -> None:
    assert {"xdp", "tcx", "cgroup", "perf_event", "raw_tracepoint", "iter"} <= set(found.link_types)
