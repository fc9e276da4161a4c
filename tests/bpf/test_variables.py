"""Global variables read and written by name on a loaded object, in their BTF types."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from remora.bpf.collection import Collection
from remora.bpf.errors import BPFError, BPFTypeMismatchError
from remora.bpf.sys.types import BPF_F_MMAPABLE
from remora.bpf.variables import Variables

pytestmark = pytest.mark.usefixtures("bpf_root")
PKT = bytes([10, 0, 0, 1]) + bytes(60)


def test_read_write_and_see_the_program_use_it(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["globals"], constants={"verdict": 1}) as c, Variables(c) as v:
        assert v["hits"] == 7 and v["zeroed"] == 0 and v["custom_data"] == 5
        assert v["verdict"] == 1 and v["magic"] == 0x1122334455667788
        assert set(v) >= {"hits", "zeroed", "custom_data", "verdict", "magic", "custom_ro"}
        v["hits"] = 100
        c.programs["xdp_count"].test_run(PKT)
        assert v["hits"] == 101  # the program counted on from what user space wrote
        assert v.raw("hits") == (101).to_bytes(8, "little")
        assert v.view("hits", ctypes.c_uint64).value == 101


def test_views_are_live_and_writes_touch_only_their_variable(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["globals"]) as c, Variables(c) as v:
        assert c.maps[".data"].flags & BPF_F_MMAPABLE  # mapped, as libbpf maps them
        hits = v.view("hits", ctypes.c_uint64)
        c.programs["xdp_count"].test_run(PKT)
        assert hits.value == 8  # the program's increment shows through the view
        hits.value = 50
        c.programs["xdp_count"].test_run(PKT)
        assert v["hits"] == 51 and c.variable("hits") == (51).to_bytes(8, "little")
        assert v["custom_data"] == 5 + 2 * 9  # each run also added custom_ro to custom_data
        del hits


def test_constants_and_wrong_types_are_refused(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["globals"]) as c, Variables(c) as v:
        with pytest.raises(BPFError, match=r"constant.*constants="):
            v["verdict"] = 3
        with pytest.raises(BPFError, match="does not fit in 4 bytes"):
            v["custom_data"] = 1 << 40
        with pytest.raises(BPFTypeMismatchError, match="c_long is signed"):
            v.view("hits", ctypes.c_int64)
        with pytest.raises(BPFError, match="no loaded global variable 'nope'"):
            v["nope"]


def test_only_loaded_sections_are_listed(bpf_objs: dict[str, Path]) -> None:
    with Collection.load(bpf_objs["globals"], programs=["sock_all"]) as c, Variables(c) as v:
        assert len(v) == 0  # sock_all uses no global data
