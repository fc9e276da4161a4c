"""The HTTP connection manager's run-time config: what every connection and request reads.

Compiled with the hot path (remora/native.py): connections and requests read these fields all the
time. The proto compiler that fills them in, `hcm_compiler.compile_hcm`, runs once per config and
stays interpreted, as all config-time code does, so compiling buys it nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from remora.proxy.accesslog.logger import AccessLogger
from remora.proxy.http.route.table import RouteTable
from remora.proxy.rbac.filter import RbacConfig


class ServerHeader(Enum):
    OVERWRITE = 0
    APPEND_IF_ABSENT = 1
    PASS_THROUGH = 2


# codec_type, with Envoy's enum values.
CODEC_AUTO = 0
CODEC_HTTP1 = 1
CODEC_HTTP2 = 2


@dataclass(frozen=True, slots=True)
class Http2Options:
    """`http2_protocol_options`, downstream.

    The defaults are the values Envoy's edge best practices recommend rather than Envoy's own
    (2^31-1 streams, 256 MiB windows): remora bounds a connection's memory through its windows
    (request bytes are credited back only once they move on upstream), so the windows are the
    memory a stalled client can make the proxy hold.
    """

    max_concurrent_streams: int = 100
    initial_stream_window_size: int = 65536
    initial_connection_window_size: int = 1048576
    hpack_table_size: int = 4096
    # connection_keepalive: a PING this often on a connection that is otherwise quiet, and the
    # connection closes if its ACK takes longer than the timeout (None: no keepalive).
    keepalive_interval: float | None = None
    keepalive_timeout: float = 5.0
    # Flood limits (Envoy's names and defaults): frames queued for a client that does not read
    # them, and frames a client sends that cost the proxy work but carry nothing.
    max_outbound_frames: int = 10000
    max_outbound_control_frames: int = 1000
    max_consecutive_inbound_frames_with_empty_payload: int = 1
    max_inbound_priority_frames_per_stream: int = 100
    max_inbound_window_update_frames_per_data_frame_sent: int = 10


DEFAULT_HTTP2 = Http2Options()


@dataclass(frozen=True, slots=True)
class HcmConfig:
    """Everything the connection manager needs, with Envoy's defaults filled in."""

    stat_prefix: str
    route_table: RouteTable
    access_logs: tuple[AccessLogger, ...]
    server_name: str
    server_header: ServerHeader
    max_request_headers_bytes: int
    max_headers_count: int
    idle_timeout: float | None
    stream_idle_timeout: float | None
    request_timeout: float | None
    request_headers_timeout: float | None
    drain_timeout: float
    max_requests_per_connection: int | None
    accept_http_10: bool
    default_host_for_http_10: str
    use_remote_address: bool
    xff_num_trusted_hops: int
    skip_xff_append: bool
    via: str
    generate_request_id: bool
    preserve_external_request_id: bool
    always_set_request_id_in_response: bool
    upgrade_types: frozenset[str]  # lowercase upgrade tokens allowed (e.g. "websocket")
    # RDS over ADS: the RouteConfiguration to fetch. Until it arrives `route_table` is empty and
    # the listener is warming (the ADS client supplies the table with `dataclasses.replace`).
    rds_name: str = ""
    # common_http_protocol_options: a connection is drained this long after it opened (closed
    # at once when idle, else after its response); a request is answered 408/504 (`DT`) this
    # long after it began. None: no limit, Envoy's default.
    max_connection_duration: float | None = None
    max_stream_duration: float | None = None
    # forward_client_cert_details (remora/proxy/http/xfcc.py: SANITIZE, Envoy's default, is 0)
    # and the set_current_client_cert_details fields an element carries.
    forward_client_cert: int = 0
    client_cert_details: frozenset[str] = frozenset()
    rbac: RbacConfig | None = None  # envoy.filters.http.rbac, before the router
    # The Wasm filters (remora/proxy/http/filter_chain.py ChainFactory); None: the router only.
    filter_chain: Any = None
    codec: int = CODEC_AUTO
    http2: Http2Options = DEFAULT_HTTP2
