"""The kernel's per-connection TCP figures as the proxy's own stats (`--bpf-telemetry`).

`remora.accel.telemetry` reports each closed TCP connection of the proxy's cgroup. Here each
report is charged to what the proxy knows it as. A connection accepted on a listener's port
counts under `listener.<stat_prefix>.tcp.*`, and one made to an upstream host counts under
`cluster.<name>.tcp.*`. Anything else in the cgroup (the admin, a health checker's
neighbours) is not the proxy's traffic and is skipped. The stats are ordinary ones, so
`/stats` and `/stats/prometheus` show them:

- `tcp.rtt_ms`: a histogram of each connection's smoothed RTT at close;
- `tcp.lifetime_ms`: a histogram of how long each connection lived;
- `tcp.retransmits`, `tcp.bytes_acked`, `tcp.bytes_received` and `tcp.connections`: counters.

Envoy's API has no field for this, so it is a command-line opt-in. Where the kernel or the
privileges do not allow it, the proxy says so in one log line and serves without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remora.proxy.server import ProxyServer
from remora.proxy.stats.histogram import Histogram
from remora.proxy.stats.metrics import Counter
from remora.proxy.stats.store import Store

if TYPE_CHECKING:  # remora.accel loads BPF objects: imported only when telemetry is asked for
    from remora.accel.telemetry import TcpTelemetry

log = logging.getLogger("remora.proxy.telemetry")

# Milliseconds, from loopback (tens of microseconds) to a slow WAN.
_U32 = struct.Struct("<I")
RTT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)
LIFETIME_BUCKETS = (1, 10, 100, 1000, 10_000, 60_000, 600_000, 3_600_000)


class Recorder:
    """Charges one event to the listener or cluster it belongs to. Sans-IO: tests feed it
    events directly, and the proxy feeds it the kernel's.

    It runs once per closed connection on the proxy's own loop, so the per-event work is a
    dict lookup and six stat updates: the stat objects are looked up once per scope, and
    the address-to-scope maps are rebuilt only when an address is not found (listeners and
    hosts change by config updates, never per connection).
    """

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.store: Store = server.store
        self._listeners: dict[int, str] = {}  # local port -> scope
        self._hosts: dict[tuple[str, int], str] = {}  # (ip, port) -> scope
        self._hosts4: dict[tuple[int, int], str] = {}  # (IPv4 as the kernel reads it, port)
        self._stats: dict[str, tuple[Histogram, Histogram, Counter, Counter, Counter, Counter]] = {}
        self._refreshed = -1.0

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed < 1.0:
            return  # a miss is usually not the proxy's traffic: do not rebuild per event
        self._refreshed = now
        self._listeners = {
            running.port: f"listener.{running.config.stat_prefix}"
            for running in self.server.listeners
        }
        self._hosts = {
            (host.address, host.port): f"cluster.{name}"
            for name, cluster in self.server.clusters.items()
            for host in cluster.hosts
        }
        # The same, keyed as the kernel's record holds an IPv4 address (a little-endian read
        # of network-order bytes), so the per-event path formats no address at all.
        self._hosts4 = {}
        for (address, port), scope in self._hosts.items():
            with contextlib.suppress(OSError):
                self._hosts4[(_U32.unpack(socket.inet_aton(address))[0], port)] = scope

    def scope_for(self, passive: bool, local: tuple[str, int], remote: tuple[str, int]) -> str:
        """The stat scope ("listener.X" or "cluster.Y"), or "" if not the proxy's traffic."""
        table: dict[Any, str] = self._listeners if passive else self._hosts
        key: Any = local[1] if passive else remote
        scope = table.get(key)
        if scope is None:
            self._refresh()
            table = self._listeners if passive else self._hosts
            scope = table.get(key, "")
        return scope

    def _metrics(
        self, scope: str
    ) -> tuple[Histogram, Histogram, Counter, Counter, Counter, Counter]:
        found = self._stats.get(scope)
        if found is None:
            store = self.store
            found = (
                store.histogram(f"{scope}.tcp.rtt_ms", RTT_BUCKETS),
                store.histogram(f"{scope}.tcp.lifetime_ms", LIFETIME_BUCKETS),
                store.counter(f"{scope}.tcp.connections"),
                store.counter(f"{scope}.tcp.retransmits"),
                store.counter(f"{scope}.tcp.bytes_acked"),
                store.counter(f"{scope}.tcp.bytes_received"),
            )
            self._stats[scope] = found
        return found

    def record_raw(self, rec: Any) -> bool:
        """One `TcpEventRecord` straight from the ring, without building a `TcpEvent`: the
        proxy's path, once per closed connection."""
        if rec.passive:
            scope = self._listeners.get(rec.local_port)
        elif rec.family == socket.AF_INET:
            scope = self._hosts4.get((rec.remote_ip4, rec.remote_port))
        else:
            scope = None
        if scope is None:
            self._refresh()
            if rec.passive:
                scope = self._listeners.get(rec.local_port)
            elif rec.family == socket.AF_INET:
                scope = self._hosts4.get((rec.remote_ip4, rec.remote_port))
            else:  # IPv6 hosts are rare enough to take the formatted path
                from remora.accel.telemetry import to_event

                e = to_event(rec)
                scope = self._hosts.get(e.remote)
            if scope is None:
                return False
        rtt, lifetime, connections, retrans, acked, received = self._metrics(scope)
        rtt.record(rec.srtt_us / 1000)
        lifetime.record(rec.lifetime_ns / 1e6)
        connections.inc()
        retrans.inc(rec.total_retrans)
        acked.inc(rec.bytes_acked)
        received.inc(rec.bytes_received)
        return True

    def record(
        self,
        passive: bool,
        local: tuple[str, int],
        remote: tuple[str, int],
        srtt_us: int,
        retransmits: int,
        bytes_acked: int,
        bytes_received: int,
        lifetime_ns: int,
    ) -> bool:
        scope = self.scope_for(passive, local, remote)
        if not scope:
            return False
        rtt, lifetime, connections, retrans, acked, received = self._metrics(scope)
        rtt.record(srtt_us / 1000)
        lifetime.record(lifetime_ns / 1e6)
        connections.inc()
        retrans.inc(retransmits)
        acked.inc(bytes_acked)
        received.inc(bytes_received)
        return True


def start(server: ProxyServer, cgroup: str = "") -> asyncio.Task[None] | None:
    """Attach the telemetry program and start charging its events; None (and one log line)
    if this kernel or these privileges do not allow it."""
    from remora.accel.telemetry import CGROUP2, TcpTelemetry, own_cgroup
    from remora.bpf.errors import BPFError

    try:
        if not cgroup and own_cgroup() == CGROUP2:
            # Attached there it would see every TCP connection of the host, not the proxy's.
            raise OSError("this process is in the root cgroup: name one with --bpf-telemetry")
        telemetry = TcpTelemetry(Path(cgroup) if cgroup else None)
    except (BPFError, OSError) as exc:
        log.warning("TCP telemetry is off: %s", exc)
        return None
    log.info("TCP telemetry on: the kernel reports every TCP connection of %s", telemetry.cgroup)
    return asyncio.get_running_loop().create_task(_run(Recorder(server), telemetry))


async def _run(recorder: Recorder, telemetry: TcpTelemetry) -> None:
    try:
        record = recorder.record_raw
        async for batch in telemetry.records():
            for rec in batch:
                record(rec)
    finally:
        with contextlib.suppress(Exception):
            telemetry.close()
