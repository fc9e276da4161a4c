"""Which HTTP version a cluster speaks upstream, from Envoy's config.

Envoy's v3 way is the `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` extension in
`typed_extension_protocol_options`: `explicit_http_config` (HTTP/1.1 or HTTP/2),
`use_downstream_protocol_config` (the client's version) or `auto_config` (ALPN). Configs written
for older Envoys put `http2_protocol_options` (and `protocol_selection`) on the Cluster itself;
those still load, as they do in Envoy. Config time only.
"""

from __future__ import annotations

from typing import TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from remora.config import support
from remora.config.errors import ErrorCollector
from remora.proxy.http.config import Http2Options
from remora.proxy.http.h2_options_compiler import compile_http2_options
from remora.proxy.upstream.config import (
    PROTOCOL_AUTO,
    PROTOCOL_DOWNSTREAM,
    PROTOCOL_HTTP1,
    PROTOCOL_HTTP2,
    UPSTREAM_HTTP2,
)

UPSTREAM_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
for _config in ("ExplicitHttpConfig", "UseDownstreamHttpConfig", "AutoHttpConfig"):
    support.register(
        f"{UPSTREAM_HTTP_OPTIONS}.{_config}", {"http_protocol_options", "http2_protocol_options"}
    )

_Options = http_protocol_options_pb2.HttpProtocolOptions
_ProtocolConfig: TypeAlias = (
    http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig
    | http_protocol_options_pb2.HttpProtocolOptions.UseDownstreamHttpConfig
    | http_protocol_options_pb2.HttpProtocolOptions.AutoHttpConfig
)


# What a TLS cluster offers by ALPN when its context names nothing itself (Envoy's behaviour).
UPSTREAM_ALPN: dict[int, tuple[str, ...]] = {
    PROTOCOL_HTTP2: ("h2",),
    PROTOCOL_AUTO: ("h2", "http/1.1"),
}


def compile_upstream_protocol(
    cluster: cluster_pb2.Cluster, path: str, errors: ErrorCollector
) -> tuple[int, Http2Options]:
    """(one of the PROTOCOL_* constants, the HTTP/2 options the cluster's connections use)."""
    value = cluster.typed_extension_protocol_options.get(UPSTREAM_HTTP_OPTIONS)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    key_path = f"{path}.typed_extension_protocol_options[{UPSTREAM_HTTP_OPTIONS!r}]"
    legacy = cluster.HasField("http2_protocol_options")
    if value is not None and value.Unpack(options):
        which = options.WhichOneof("upstream_protocol_options")
        if which is not None:
            if legacy:
                errors.add(
                    f"{path}.http2_protocol_options",
                    f"set either this or {key_path}.{which}, not both",
                )
            return _from_extension(options, which, f"{key_path}.{which}", errors)
    if legacy:
        http2 = compile_http2_options(
            cluster.http2_protocol_options,
            f"{path}.http2_protocol_options",
            errors,
            UPSTREAM_HTTP2,
            upstream=True,
        )
        if cluster.protocol_selection == cluster_pb2.Cluster.USE_DOWNSTREAM_PROTOCOL:
            return PROTOCOL_DOWNSTREAM, http2
        return PROTOCOL_HTTP2, http2
    return PROTOCOL_HTTP1, UPSTREAM_HTTP2


def _from_extension(
    options: http_protocol_options_pb2.HttpProtocolOptions,
    which: str,
    path: str,
    errors: ErrorCollector,
) -> tuple[int, Http2Options]:
    config: _ProtocolConfig = getattr(options, which)
    # HTTP/3 and alternate_protocols_cache_options are not registered, so the config's
    # support check refuses them by path.
    http2 = _http2(config, path, errors)
    if which == "explicit_http_config":
        explicit = PROTOCOL_HTTP2 if config.HasField("http2_protocol_options") else PROTOCOL_HTTP1
        return explicit, http2
    if which == "use_downstream_protocol_config":
        return PROTOCOL_DOWNSTREAM, http2
    # auto_config: ALPN is a TLS extension; the cluster compiler refuses it without TLS, as
    # Envoy does.
    return PROTOCOL_AUTO, http2


def _http2(config: _ProtocolConfig, path: str, errors: ErrorCollector) -> Http2Options:
    if not config.HasField("http2_protocol_options"):
        return UPSTREAM_HTTP2
    return compile_http2_options(
        config.http2_protocol_options,
        f"{path}.http2_protocol_options",
        errors,
        UPSTREAM_HTTP2,
        upstream=True,
    )
