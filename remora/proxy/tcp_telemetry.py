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
from pathlib import Path
from typing import TYPE_CHECKING

from remora.proxy.server import ProxyServer
from remora.proxy.stats.store import Store

if TYPE_CHECKING:  # remora.accel loads BPF objects: imported only when telemetry is asked for
    from remora.accel.telemetry import TcpTelemetry

log = logging.getLogger("remora.proxy.telemetry")

# Milliseconds, from loopback (tens of microseconds) to a slow WAN.
RTT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)
LIFETIME_BUCKETS = (1, 10, 100, 1000, 10_000, 60_000, 600_000, 3_600_000)


class Recorder:
    """Charges one event to the listener or cluster it belongs to. Sans-IO: tests feed it
    events directly, and the proxy feeds it the kernel's."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.store: Store = server.store

    def scope_for(self, passive: bool, local: tuple[str, int], remote: tuple[str, int]) -> str:
        """The stat scope ("listener.X" or "cluster.Y"), or "" if not the proxy's traffic."""
        if passive:
            for running in self.server.listeners:
                if running.port == local[1] and running.host in (local[0], "0.0.0.0", "::"):
                    return f"listener.{running.config.stat_prefix}"
            return ""
        for name, cluster in self.server.clusters.items():
            for host in cluster.hosts:
                if (host.address, host.port) == remote:
                    return f"cluster.{name}"
        return ""

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
        store = self.store
        store.histogram(f"{scope}.tcp.rtt_ms", RTT_BUCKETS).record(srtt_us / 1000)
        store.histogram(f"{scope}.tcp.lifetime_ms", LIFETIME_BUCKETS).record(lifetime_ns / 1e6)
        store.counter(f"{scope}.tcp.connections").inc()
        store.counter(f"{scope}.tcp.retransmits").inc(retransmits)
        store.counter(f"{scope}.tcp.bytes_acked").inc(bytes_acked)
        store.counter(f"{scope}.tcp.bytes_received").inc(bytes_received)
        return True


def start(server: ProxyServer, cgroup: str = "") -> asyncio.Task[None] | None:
    """Attach the telemetry program and start charging its events; None (and one log line)
    if this kernel or these privileges do not allow it."""
    from remora.accel.telemetry import TcpTelemetry
    from remora.bpf.errors import BPFError

    try:
        telemetry = TcpTelemetry(Path(cgroup) if cgroup else None)
    except (BPFError, OSError) as exc:
        log.warning("TCP telemetry is off: %s", exc)
        return None
    log.info("TCP telemetry on: the kernel reports every TCP connection of %s", telemetry.cgroup)
    return asyncio.get_running_loop().create_task(_run(Recorder(server), telemetry))


async def _run(recorder: Recorder, telemetry: TcpTelemetry) -> None:
    try:
        async for e in telemetry.events():
            recorder.record(
                e.passive,
                e.local,
                e.remote,
                e.srtt_us,
                e.total_retrans,
                e.bytes_acked,
                e.bytes_received,
                e.lifetime_ns,
            )
    finally:
        with contextlib.suppress(Exception):
            telemetry.close()
