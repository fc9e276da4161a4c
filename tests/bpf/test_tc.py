"""tc clsact filters through netlink (the fallback for kernels without tcx), in a private
network namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bpf.netns import run_in_netns

pytestmark = pytest.mark.usefixtures("bpf_root")

SCRIPT = """
import json, socket, subprocess, sys
from remora.bpf.collection import Collection
from remora.bpf.tc import attach_tc, attach_tc_clsact

def send(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(n):
        s.sendto(b"x", ("127.0.0.1", 9))
    s.close()

def filters():
    out = subprocess.run(["tc", "filter", "show", "dev", "lo", "ingress"], capture_output=True,
                         text=True, check=True).stdout
    return out.count("direct-action")

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
result = {}
with Collection.load(sys.argv[1], programs=["on_tcx"]) as c:
    with attach_tc_clsact(c.programs["on_tcx"], "lo", "ingress") as f:
        result["listed"] = filters()
        send(5)
    result["clsact"] = c.maps["hits"][7]
    result["listed_after"] = filters()
    send(2)
    result["after_close"] = c.maps["hits"][7]
    with attach_tc(c.programs["on_tcx"], "lo", "ingress") as link:
        result["auto_kind"] = link.kind
print(json.dumps(result))
"""


def test_a_clsact_filter_counts_and_goes_away(bpf_objs: dict[str, Path]) -> None:
    got = run_in_netns(SCRIPT, str(bpf_objs["attach"]))
    assert got["listed"] == 1 and got["listed_after"] == 0
    assert got["clsact"] >= 5
    assert got["after_close"] == got["clsact"]  # removed: nothing more counted
    assert got["auto_kind"] == "tcx"  # this kernel has tcx, so attach_tc does not fall back
