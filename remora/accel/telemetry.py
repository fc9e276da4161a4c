"""TCP telemetry: per-connection RTT, retransmits, bytes and lifetime, from the kernel.

`tcp_telemetry.bpf.c` is a sockops program on a cgroup. For every TCP connection of the
processes in that cgroup it sends one event when the connection closes. `TcpTelemetry` loads
the program, attaches it, and reads the events from its ring buffer, decoded into `TcpEvent`
records whose layout is checked against the object's BTF. No packet and no payload byte
reaches Python: the kernel has already counted them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from remora.accel.build import object_path
from remora.bpf.collection import Collection
from remora.bpf.link import Link, attach_cgroup
from remora.bpf.ringbuf import RingBuffer
from remora.bpf.sys.fd import Closing

CGROUP2 = Path("/sys/fs/cgroup/unified")
DRAIN_INTERVAL = 0.25  # seconds: how stale a stat may be when connections close slowly


class TcpEventRecord(ctypes.Structure):
    """`struct tcp_event` of tcp_telemetry.bpf.c (checked against its BTF at open)."""

    _fields_ = [
        ("cookie", ctypes.c_uint64),
        ("lifetime_ns", ctypes.c_uint64),
        ("bytes_acked", ctypes.c_uint64),
        ("bytes_received", ctypes.c_uint64),
        ("srtt_us", ctypes.c_uint32),
        ("total_retrans", ctypes.c_uint32),
        ("local_ip4", ctypes.c_uint32),
        ("remote_ip4", ctypes.c_uint32),
        ("local_ip6", ctypes.c_uint32 * 4),
        ("remote_ip6", ctypes.c_uint32 * 4),
        ("local_port", ctypes.c_uint16),
        ("remote_port", ctypes.c_uint16),
        ("family", ctypes.c_uint16),
        ("passive", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
    ]


@dataclasses.dataclass(frozen=True)
class TcpEvent:
    """One closed connection, as the kernel saw it."""

    local: tuple[str, int]
    remote: tuple[str, int]
    passive: bool  # accepted by a listener in the cgroup (else connected from it)
    srtt_us: int
    total_retrans: int
    bytes_acked: int
    bytes_received: int
    lifetime_ns: int
    cookie: int


_U32 = struct.Struct("<I")


def _address(family: int, ip4: int, ip6: Any) -> str:
    """Addresses arrive as network-order bytes read into little-endian u32s."""
    if family == socket.AF_INET:
        return socket.inet_ntoa(_U32.pack(ip4))
    return socket.inet_ntop(socket.AF_INET6, b"".join(_U32.pack(w) for w in ip6))


def to_event(rec: TcpEventRecord) -> TcpEvent:
    return TcpEvent(
        (_address(rec.family, rec.local_ip4, rec.local_ip6), rec.local_port),
        (_address(rec.family, rec.remote_ip4, rec.remote_ip6), rec.remote_port),
        bool(rec.passive),
        rec.srtt_us,
        rec.total_retrans,
        rec.bytes_acked,
        rec.bytes_received,
        rec.lifetime_ns,
        rec.cookie,
    )


def own_cgroup() -> Path:
    """This process's cgroup v2 directory (the `0::` line of /proc/self/cgroup)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return CGROUP2 / line.strip()[3:].lstrip("/")
    raise OSError("this process is in no cgroup v2 hierarchy")


class TcpTelemetry(Closing):
    """The telemetry program attached to one cgroup, and the reader of its events."""

    def __init__(self, cgroup: str | os.PathLike[str] | None = None) -> None:
        self.cgroup = Path(cgroup) if cgroup is not None else own_cgroup()
        self.collection = Collection.load(object_path("tcp_telemetry"))
        try:
            self.link: Link = attach_cgroup(self.collection.programs["tcp_telemetry"], self.cgroup)
            self.reader = RingBuffer(
                self.collection.maps["events"],
                ctype=TcpEventRecord,
                btf=self.collection.spec.btf,
                btf_type="tcp_event",
            )
        except BaseException:
            self.collection.close()
            raise

    def poll(self, timeout: float | None = 0.0) -> list[TcpEvent]:
        """What has arrived. The program wakes waiting readers only per batch, so `timeout`
        is waited out in full when few connections close; it never blocks past it."""
        return [to_event(r) for r in self.reader.poll(timeout=timeout)]

    async def records(self, interval: float = DRAIN_INTERVAL) -> AsyncIterator[list[Any]]:
        """Batches of raw `TcpEventRecord`s: the program wakes the reader only when a batch
        has piled up, so the ring is also drained every `interval` seconds."""
        while True:
            batch = self.reader.read()
            if batch:
                yield batch
                continue
            with contextlib.suppress(TimeoutError):
                batch = await asyncio.wait_for(self.reader.aread(), interval)
                yield batch

    async def events(self, interval: float = DRAIN_INTERVAL) -> AsyncIterator[TcpEvent]:
        async for batch in self.records(interval):
            for rec in batch:
                yield to_event(rec)

    @property
    def dropped(self) -> int:
        """Events the kernel could not queue because the ring buffer was full."""
        return int(self.collection.maps["dropped"][0])

    def close(self) -> None:
        self.reader.close()
        self.link.close()
        self.collection.close()
