"""What the data path knows about one finished request or TCP connection.

The connection manager and the TCP proxy fill one of these as the exchange progresses and hand it to
every configured logger at the end. It is plain data so that formatting never reaches back into live
connection objects, and so that tests can build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remora.proxy.tls.facts import TlsFacts


@dataclass(slots=True)
class AccessLogRecord:
    """One request (HTTP) or one downstream connection (TCP, where method and path stay None).

    Headers are the data-path lists: lowercase names, latin-1 values, no pseudo-headers. Durations
    are milliseconds measured from `start_time`; None means the event never happened.
    """

    start_time: float = 0.0
    method: str | None = None
    path: str | None = None
    authority: str | None = None
    scheme: str | None = None
    protocol: str | None = "HTTP/1.1"
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_code: int = 0
    response_flags: str = "-"
    duration_ms: float = 0.0
    request_duration_ms: float | None = None
    response_duration_ms: float | None = None
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    bytes_received: int = 0
    bytes_sent: int = 0
    downstream_remote_address: str | None = None
    downstream_local_address: str | None = None
    route_name: str | None = None
    connection_id: int | None = None
    tls: TlsFacts | None = None  # the downstream connection's, when it is TLS
    response_code_details: str | None = None
