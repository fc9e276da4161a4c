"""Envoy's `Http2ProtocolOptions` -> `Http2Options`, for a connection manager and a cluster alike.

Config time only, like the compilers that call it (hcm_compiler, upstream/protocol_compiler).
"""

from __future__ import annotations

from envoy.config.core.v3 import protocol_pb2

from remora.config import support
from remora.config.common import optional_seconds
from remora.config.errors import ErrorCollector
from remora.proxy.http.config import DEFAULT_HTTP2, Http2Options

support.register(
    "envoy.config.core.v3.Http2ProtocolOptions",
    {
        "hpack_table_size",
        "max_concurrent_streams",
        "initial_stream_window_size",
        "initial_connection_window_size",
        "max_outbound_frames",
        "max_outbound_control_frames",
        "max_consecutive_inbound_frames_with_empty_payload",
        "max_inbound_priority_frames_per_stream",
        "max_inbound_window_update_frames_per_data_frame_sent",
        "connection_keepalive",
    },
)
support.register("envoy.config.core.v3.KeepaliveSettings", {"interval", "timeout"})

# What an upstream connection has no use for: the flood limits guard the proxy against what a
# client makes it do, and a cluster's peers are the proxy's own upstreams.
DOWNSTREAM_ONLY_FIELDS = (
    "max_outbound_frames",
    "max_outbound_control_frames",
    "max_consecutive_inbound_frames_with_empty_payload",
    "max_inbound_priority_frames_per_stream",
    "max_inbound_window_update_frames_per_data_frame_sent",
)


def compile_http2_options(
    options: protocol_pb2.Http2ProtocolOptions,
    path: str,
    errors: ErrorCollector,
    default: Http2Options = DEFAULT_HTTP2,
    upstream: bool = False,
) -> Http2Options:
    """Envoy's bounds for each field (RFC 9113's for the windows and the table); `upstream`:
    a cluster's, which refuses the downstream flood limits by path."""
    if upstream:
        for name in DOWNSTREAM_ONLY_FIELDS:
            if options.HasField(name):
                errors.add(
                    f"{path}.{name}",
                    f"not supported: {path}.{name} (a flood limit guards against clients; "
                    "set it on the connection manager)",
                )

    def bounded(name: str, low: int, high: int, fallback: int) -> int:
        if not options.HasField(name):
            return fallback
        value = int(getattr(options, name).value)
        if not low <= value <= high:
            errors.add(f"{path}.{name}", f"must be {low}-{high}")
        return value

    keepalive_interval: float | None = None
    keepalive_timeout = default.keepalive_timeout
    if options.HasField("connection_keepalive"):
        keepalive = options.connection_keepalive
        keepalive_interval = optional_seconds(keepalive, "interval", None)
        if not keepalive.HasField("timeout"):
            errors.add(f"{path}.connection_keepalive.timeout", "is required")
        else:
            keepalive_timeout = optional_seconds(keepalive, "timeout", 5.0) or 0.0
            if keepalive_timeout <= 0:
                errors.add(f"{path}.connection_keepalive.timeout", "must be positive")
        if keepalive_interval is not None and keepalive_interval <= 0:
            errors.add(f"{path}.connection_keepalive.interval", "must be positive")
    return Http2Options(
        max_concurrent_streams=bounded(
            "max_concurrent_streams", 1, 2**31 - 1, default.max_concurrent_streams
        ),
        initial_stream_window_size=bounded(
            "initial_stream_window_size", 65535, 2**31 - 1, default.initial_stream_window_size
        ),
        initial_connection_window_size=bounded(
            "initial_connection_window_size",
            65535,
            2**31 - 1,
            default.initial_connection_window_size,
        ),
        hpack_table_size=bounded("hpack_table_size", 0, 2**32 - 1, default.hpack_table_size),
        keepalive_interval=keepalive_interval,
        keepalive_timeout=keepalive_timeout,
        max_outbound_frames=bounded(
            "max_outbound_frames", 1, 2**32 - 1, default.max_outbound_frames
        ),
        max_outbound_control_frames=bounded(
            "max_outbound_control_frames", 1, 2**32 - 1, default.max_outbound_control_frames
        ),
        max_consecutive_inbound_frames_with_empty_payload=bounded(
            "max_consecutive_inbound_frames_with_empty_payload",
            0,
            2**32 - 1,
            default.max_consecutive_inbound_frames_with_empty_payload,
        ),
        max_inbound_priority_frames_per_stream=bounded(
            "max_inbound_priority_frames_per_stream",
            0,
            2**32 - 1,
            default.max_inbound_priority_frames_per_stream,
        ),
        max_inbound_window_update_frames_per_data_frame_sent=bounded(
            "max_inbound_window_update_frames_per_data_frame_sent",
            1,
            2**32 - 1,
            default.max_inbound_window_update_frames_per_data_frame_sent,
        ),
    )
