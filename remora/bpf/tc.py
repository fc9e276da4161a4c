"""tc programs on kernels without tcx links: a direct-action bpf filter on a clsact qdisc.

tcx (kernel 6.6+) attaches through a bpf_link, and `remora.bpf.link.attach_tcx` uses it. Older
kernels only take tc programs through netlink, as `tc filter add ... bpf da` does. That path
uses pyroute2 for the netlink, since remora writes no netlink by hand. `attach_tc` picks tcx
and falls back with one log line.

A clsact filter is not an fd: it outlives the process that made it. `TcFilter.close()`
removes it, and so does leaving its `with` block. A crashed process leaves the filter in
place, which is what `tc` itself does, and the reason tcx is preferred.
"""

from __future__ import annotations

import logging

from remora.bpf.errors import BPFError, BPFSyscallError
from remora.bpf.link import Link, _ifindex, attach_tcx
from remora.bpf.prog import Program
from remora.bpf.sys.fd import Closing

log = logging.getLogger("remora.bpf")

_PARENT = {"ingress": "ffff:fff2", "egress": "ffff:fff3"}  # TC_H_MIN_INGRESS / _EGRESS
_EEXIST = 17


class TcFilter(Closing):
    """One bpf filter on a clsact qdisc. Close it to remove it."""

    def __init__(self, ifindex: int, direction: str, handle: int, priority: int) -> None:
        self.ifindex = ifindex
        self.direction = direction
        self.handle = handle
        self.priority = priority
        self.kind = "tc"
        self.target = f"{ifindex}/{direction}"
        self._open = True

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        from pyroute2 import IPRoute

        with IPRoute() as ip:
            try:
                ip.tc(
                    "del-filter",
                    "bpf",
                    self.ifindex,
                    self.handle,
                    parent=_PARENT[self.direction],
                    prio=self.priority,
                )
            except Exception as e:  # the interface may be gone, taking the filter with it
                log.debug("tc filter on %s already gone: %s", self.target, e)


def attach_tc_clsact(
    program: Program, iface: str | int, direction: str, priority: int = 1
) -> TcFilter:
    """Add clsact to the interface if missing, and the program as a direct-action filter."""
    if direction not in _PARENT:
        raise BPFError(f"tc direction {direction!r}: use 'ingress' or 'egress'")
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    index = _ifindex(iface)
    handle = 1
    with IPRoute() as ip:
        try:
            ip.tc("add", "clsact", index)
        except NetlinkError as e:
            if e.code != _EEXIST:
                raise BPFError(f"tc: cannot add clsact to {iface}: {e}") from None
        try:
            ip.tc(
                "add-filter",
                "bpf",
                index,
                handle,
                fd=program.fd.raw,
                name=program.name,
                parent=_PARENT[direction],
                prio=priority,
                classid=1,
                direct_action=True,
            )
        except NetlinkError as e:
            raise BPFError(f"tc: cannot add program {program.name!r} on {iface}: {e}") from None
    return TcFilter(index, direction, handle, priority)


def attach_tc(program: Program, iface: str | int, direction: str) -> Link | TcFilter:
    """tcx where the kernel has it, else a clsact filter."""
    try:
        return attach_tcx(program, iface, direction)
    except BPFSyscallError as e:
        if e.errno not in (22, 95, 524):  # EINVAL, EOPNOTSUPP, ENOTSUPP: no tcx here
            raise
        log.info("tcx is not available (%s); attaching %s as a clsact filter", e, program.name)
        return attach_tc_clsact(program, iface, direction)
