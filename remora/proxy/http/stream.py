"""What an exchange (the router) needs from the downstream side of its stream.

An HTTP/1.1 connection is its only stream's downstream (`downstream.DownstreamConnection`); an
HTTP/2 connection gives each stream its own (`h2_downstream.H2Stream`). The exchange reads the
connection's facts through this and writes its response back through it: bytes already framed
for HTTP/1.1 (`write`), or, when the stream has an `h2` responder, a head, data and an end
that HTTP/2 frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from remora.proxy.http.config import HcmConfig
    from remora.proxy.http.exchange import Exchange
    from remora.proxy.http.h1_codec import Headers
    from remora.proxy.http.hcm_stats import HcmStats
    from remora.proxy.http.listener import HttpListener
    from remora.proxy.http.request import Request
    from remora.proxy.http.xfcc import XfccPlan
    from remora.proxy.tls.facts import TlsFacts


class H2Responder(Protocol):
    """An HTTP/2 stream's response side: h2 frames, flow-controls and buffers what it is given."""

    def send_interim(self, status: int, headers: Headers) -> None: ...
    def send_head(self, status: int, headers: Headers, end_stream: bool) -> None: ...
    def send_data(self, data: bytes) -> None: ...
    def send_end(self, trailers: Headers | None) -> None: ...


class DownstreamStream(Protocol):
    h2: H2Responder | None  # None: HTTP/1.1, whose response the exchange frames itself
    hcm: HcmConfig
    stats: HcmStats
    listener: HttpListener
    scheme: str
    remote_ip: str
    remote_address: str
    tls_facts: TlsFacts | None
    xfcc: XfccPlan
    transport: asyncio.Transport | None
    last_activity: float  # monotonic; the time of the read or write last seen on the stream
    writable: bool
    tunnel_mode: bool
    active: Exchange | None

    def write(self, data: bytes) -> None: ...
    def block_reading(self, block: bool) -> None: ...
    def deadline_added(self, at: float) -> None: ...
    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None: ...
    def wants_close_after(self, request: Request) -> bool: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class DownstreamSession(Protocol):
    """A client connection as its listener sees it: drained on shutdown, aborted at the end."""

    def drain(self) -> None: ...
    def abort(self) -> None: ...
