"""Attaching programs to real hooks and watching them fire: tracepoints, raw tracepoints,
tp_btf, uprobes, cgroups, XDP and TCX (in a private network namespace), sockmaps, pins."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from remora.bpf.collection import Collection
from remora.bpf.errors import BPFError, BPFSyscallError
from remora.bpf.link import (
    Link,
    attach_cgroup,
    attach_iter,
    attach_socket_filter,
    attach_sockmap,
    attach_tracepoint,
    attach_uprobe,
    auto_attach,
    detach_socket_filter,
)
from remora.bpf.sys.types import LinkType
from tests.bpf.netns import run_in_netns

pytestmark = pytest.mark.usefixtures("bpf_root")

TRACEPOINT, RAW_TP, TP_BTF, UPROBE, URETPROBE, SOCK_CREATE, XDP, TCX, SK_MSG, SK_LOOKUP = range(10)
CGROUP_ROOT = Path("/sys/fs/cgroup/unified")


@pytest.fixture
def attach_coll(bpf_objs: dict[str, Path]) -> Iterator[Collection]:
    with Collection.load(bpf_objs["attach"], constants={"target_tgid": os.getpid()}) as c:
        yield c


def _hits(c: Collection) -> dict[int, int]:
    return dict(c.maps["hits"].items())


def test_tracing_hooks_fire_while_attached_and_stop_when_closed(attach_coll: Collection) -> None:
    names = ["on_tracepoint", "on_raw_tp", "on_tp_btf", "on_uprobe", "on_uretprobe"]
    links = [auto_attach(attach_coll.programs[n]) for n in names]
    try:
        assert [link.kind for link in links] == [
            "tracepoint",
            "raw_tracepoint",
            "raw_tracepoint",
            "uprobe",
            "uretprobe",
        ]
        for _ in range(3):
            os.getppid()  # libc's getppid(): the uprobes and the syscall's tracepoints
        hits = _hits(attach_coll)
        assert [hits[i] for i in (TRACEPOINT, RAW_TP, TP_BTF, UPROBE, URETPROBE)] == [3] * 5
        kinds = [LinkType(link.info().type) for link in links]
        assert kinds == [
            LinkType.PERF_EVENT,
            LinkType.RAW_TRACEPOINT,
            LinkType.RAW_TRACEPOINT,
            LinkType.PERF_EVENT,
            LinkType.PERF_EVENT,
        ]
        prog_ids = {attach_coll.programs[n].info().id for n in names}
        assert {link.info().prog_id for link in links} == prog_ids
    finally:
        for link in links:
            link.close()
    os.getppid()
    assert _hits(attach_coll)[TRACEPOINT] == 3  # closed links are detached


def test_explicit_forms_of_the_tracing_attaches(attach_coll: Collection) -> None:
    with attach_tracepoint(attach_coll.programs["on_tracepoint"], "syscalls", "sys_enter_getppid"):
        os.getppid()
    with attach_uprobe(attach_coll.programs["on_uprobe"], "libc.so.6", "getppid"):
        os.getppid()
    assert _hits(attach_coll)[TRACEPOINT] == 1 and _hits(attach_coll)[UPROBE] == 1
    with pytest.raises(BPFError, match="no tracepoint nope/nothing"):
        attach_tracepoint(attach_coll.programs["on_tracepoint"], "nope/nothing")
    with pytest.raises(BPFError, match="no function symbol 'no_such_function'"):
        attach_uprobe(attach_coll.programs["on_uprobe"], "libc.so.6", "no_such_function")
    with pytest.raises(BPFError, match="names no target to attach to; use attach_xdp"):
        auto_attach(attach_coll.programs["on_xdp"])


def test_a_link_pinned_survives_its_fd_and_detaches_when_unpinned(
    attach_coll: Collection, bpffs_dir: Path
) -> None:
    link = auto_attach(attach_coll.programs["on_tracepoint"])
    link.pin(bpffs_dir / "tp")
    link.close()
    os.getppid()
    assert _hits(attach_coll)[TRACEPOINT] == 1  # the pin keeps it attached
    again = Link.open_pinned(bpffs_dir / "tp")
    assert again.kind == "perf_event"
    again.unpin()
    again.close()
    os.getppid()
    assert _hits(attach_coll)[TRACEPOINT] == 1


@pytest.fixture
def cgroup() -> Iterator[Path]:
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        pytest.fail(f"cgroup v2 is not mounted at {CGROUP_ROOT}")
    cg = CGROUP_ROOT / f"remora-test-{os.getpid()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        cg.rmdir()


def _sockets_in(cg: Path, count: int) -> str:
    """Make `count` sockets in a child process inside `cg`; what the child printed."""

    def enter() -> None:
        (cg / "cgroup.procs").write_text(str(os.getpid()))

    code = (
        "import socket\n"
        f"try:\n    [socket.socket().close() for _ in range({count})]\n    print('ok')\n"
        "except PermissionError:\n    print('refused')"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        check=True,
        preexec_fn=enter,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_cgroup_sock_create_counts_sockets_of_processes_in_the_cgroup(
    attach_coll: Collection, cgroup: Path
) -> None:
    with attach_cgroup(attach_coll.programs["on_sock_create"], cgroup) as link:
        assert "inet_sock_create" in link.target
        assert _sockets_in(cgroup, 4) == "ok"
        socket.socket().close()  # this process is not in the cgroup: not counted
    assert _hits(attach_coll)[SOCK_CREATE] == 4
    assert _sockets_in(cgroup, 1) == "ok"  # closed: detached
    assert _hits(attach_coll)[SOCK_CREATE] == 4


def test_update_swaps_the_program_and_detach_ends_it(attach_coll: Collection, cgroup: Path) -> None:
    allow, deny = attach_coll.programs["on_sock_create"], attach_coll.programs["deny_sock_create"]
    with attach_cgroup(allow, cgroup) as link:
        assert _sockets_in(cgroup, 1) == "ok"
        with pytest.raises(BPFSyscallError):  # BPF_F_REPLACE: `deny` is not the one attached
            link.update(allow, old=deny)
        link.update(deny, old=allow)
        assert _sockets_in(cgroup, 1) == "refused"
        link.detach()
        assert _sockets_in(cgroup, 1) == "ok"
    assert _hits(attach_coll)[SOCK_CREATE] == 1


def test_sk_msg_on_a_sockhash_sees_each_send(attach_coll: Collection) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        with attach_sockmap(attach_coll.programs["on_sk_msg"], attach_coll.maps["socks"]):
            attach_coll.maps["socks"][0] = client.fileno()
            for _ in range(3):
                client.sendall(b"ping")
            assert peer.recv(100)  # the verdict passes the data on
        assert _hits(attach_coll)[SK_MSG] == 3
    finally:
        for s in (client, peer, server):
            s.close()


NETNS_SCRIPT = """
import json, os, socket, subprocess, sys
from remora.bpf.collection import Collection
from remora.bpf.link import attach_tcx, attach_xdp
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with Collection.load(sys.argv[1], programs=["on_xdp", "on_tcx"]) as c:
    xdp = attach_xdp(c.programs["on_xdp"], "lo", mode="generic")
    with xdp, attach_tcx(c.programs["on_tcx"], "lo"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(5):
            s.sendto(b"x", ("127.0.0.1", 9))
        s.close()
    counts = dict(c.maps["hits"].items())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", 9))  # detached: not counted
    s.close()
    after = dict(c.maps["hits"].items())
print(json.dumps({"xdp": counts[6], "tcx": counts[7], "after": [after[6], after[7]]}))
"""


def test_xdp_and_tcx_on_an_interface_in_a_private_netns(bpf_objs: dict[str, Path]) -> None:
    got = run_in_netns(NETNS_SCRIPT, str(bpf_objs["attach"]))
    # lo receives every datagram sent to 127.0.0.1 (ICMP port-unreachable replies may add more)
    assert got["xdp"] >= 5 and got["tcx"] >= 5
    assert got["after"] == [got["xdp"], got["tcx"]]


def test_a_socket_filter_drops_until_detached(attach_coll: Collection) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.3)
        attach_socket_filter(attach_coll.programs["keep_nothing"], rx)
        tx.sendto(b"dropped", rx.getsockname())
        with pytest.raises(TimeoutError):
            rx.recv(100)
        detach_socket_filter(rx)
        tx.sendto(b"kept", rx.getsockname())
        assert rx.recv(100) == b"kept"
    finally:
        rx.close()
        tx.close()


SK_LOOKUP_SCRIPT = """
import json, socket, subprocess, sys
from remora.bpf.collection import Collection
from remora.bpf.link import attach_sk_lookup
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = socket.create_server(("127.0.0.1", 0))
port = server.getsockname()[1]
with Collection.load(sys.argv[1], programs=["on_sk_lookup"],
                     constants={"target_port_host": port}) as c:
    with attach_sk_lookup(c.programs["on_sk_lookup"]):
        for _ in range(3):
            socket.create_connection(("127.0.0.1", port)).close()
            server.accept()[0].close()
    seen = c.maps["hits"][9]
    socket.create_connection(("127.0.0.1", port)).close()
    after = c.maps["hits"][9]
print(json.dumps({"seen": seen, "after": after}))
"""


def test_sk_lookup_sees_each_connection_in_its_netns(bpf_objs: dict[str, Path]) -> None:
    got = run_in_netns(SK_LOOKUP_SCRIPT, str(bpf_objs["attach"]))
    assert got == {"seen": 3, "after": 3}


VETH_SCRIPT = """
import json, socket, subprocess, sys, time
from remora.bpf.collection import Collection
from remora.bpf.link import attach_xdp
for args in (["add", "v0", "type", "veth", "peer", "name", "v1"], ["set", "v0", "up"],
             ["set", "v1", "up"]):
    subprocess.run(["ip", "link", *args], check=True)
frame = b"\\xff" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01" + b"\\x88\\xb5" + bytes(50)
out = {}
with Collection.load(sys.argv[1], programs=["on_xdp"]) as c:
    for mode in ("native", "generic"):
        before = c.maps["hits"][6]
        with attach_xdp(c.programs["on_xdp"], "v1", mode=mode):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            s.bind(("v0", 0))
            for _ in range(5):
                s.send(frame)  # out of v0, into v1: past v1's XDP hook
            s.close()
            time.sleep(0.1)
        out[mode] = c.maps["hits"][6] - before
print(json.dumps(out))
"""


def test_xdp_on_a_veth_in_a_netns_native_and_generic(bpf_objs: dict[str, Path]) -> None:
    got = run_in_netns(VETH_SCRIPT, str(bpf_objs["attach"]))
    # the five frames, plus whatever the kernel itself sends when a link comes up (IPv6 ND)
    assert 5 <= got["native"] <= 8 and 5 <= got["generic"] <= 8


def test_an_iterator_prints_the_map_or_the_kernel_refuses_iterators(
    bpf_objs: dict[str, Path],
) -> None:
    try:
        coll = Collection.load(bpf_objs["iter"])
    except BPFSyscallError as e:
        # This kernel refuses iterator programs with EPERM, as it refuses those that need BPF
        # trampolines (bpftool prog load fails the same way).
        assert e.errno == 1
        pytest.skip(f"this kernel refuses iterator programs: {e}")
    with coll:
        coll.maps["table"][1] = 10
        coll.maps["table"][2] = 20
        with attach_iter(coll.programs["dump_table"], coll.maps["table"]) as link:
            assert sorted(link.read().decode().split()) == ["1=10", "2=20"]
