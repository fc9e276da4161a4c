"""Which HTTP version a cluster speaks, from each of Envoy's ways of saying it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.upstream.config import (
    PROTOCOL_AUTO,
    PROTOCOL_DOWNSTREAM,
    PROTOCOL_HTTP1,
    PROTOCOL_HTTP2,
    ClusterConfig,
)
from tests.proxy.harness import cluster
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority

_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_KEY = f"static_resources.clusters[0].typed_extension_protocol_options[{_OPTIONS!r}]"


def _options(**config: Any) -> dict[str, Any]:
    return {_OPTIONS: {"@type": f"type.googleapis.com/{_OPTIONS}", **config}}


def _compile(**extra: Any) -> ClusterConfig:
    config = compile_bootstrap(
        parse_dict({"static_resources": {"clusters": [cluster("c", [1], **extra)]}})
    )
    return config.clusters["c"]


def _errors(**extra: Any) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        _compile(**extra)
    return [str(e) for e in info.value.errors]


def test_each_way_of_choosing_the_protocol() -> None:
    assert _compile().upstream_protocol == PROTOCOL_HTTP1
    explicit1 = _options(explicit_http_config={"http_protocol_options": {}})
    assert _compile(typed_extension_protocol_options=explicit1).upstream_protocol == PROTOCOL_HTTP1
    explicit2 = _options(
        explicit_http_config={"http2_protocol_options": {"max_concurrent_streams": 7}}
    )
    compiled = _compile(typed_extension_protocol_options=explicit2)
    assert compiled.upstream_protocol == PROTOCOL_HTTP2
    assert compiled.http2.max_concurrent_streams == 7
    downstream = _options(use_downstream_protocol_config={"http2_protocol_options": {}})
    assert (
        _compile(typed_extension_protocol_options=downstream).upstream_protocol
        == PROTOCOL_DOWNSTREAM
    )
    legacy = _compile(http2_protocol_options={"initial_stream_window_size": 1048576})
    assert legacy.upstream_protocol == PROTOCOL_HTTP2
    assert legacy.http2.initial_stream_window_size == 1048576
    assert legacy.http2.max_concurrent_streams == 2**31 - 1  # the peer's SETTINGS decide
    legacy_downstream = _compile(
        http2_protocol_options={}, protocol_selection="USE_DOWNSTREAM_PROTOCOL"
    )
    assert legacy_downstream.upstream_protocol == PROTOCOL_DOWNSTREAM


def test_auto_config_needs_tls_and_offers_h2_then_http1(tmp_path: Path) -> None:
    auto = _options(auto_config={"http2_protocol_options": {}})
    assert _errors(typed_extension_protocol_options=auto) == [
        f"{_KEY}.auto_config: auto_config chooses the protocol by TLS ALPN: the cluster needs a "
        "TLS transport_socket (for plaintext HTTP/2 use explicit_http_config)"
    ]
    ca = Authority().write(tmp_path)
    compiled = _compile(
        typed_extension_protocol_options=auto, transport_socket=tlsconfig.upstream(ca=ca)
    )
    assert compiled.upstream_protocol == PROTOCOL_AUTO
    assert compiled.tls is not None and compiled.tls.alpn == ("h2", "http/1.1")
    explicit2 = _options(explicit_http_config={"http2_protocol_options": {}})
    h2_tls = _compile(
        typed_extension_protocol_options=explicit2, transport_socket=tlsconfig.upstream(ca=ca)
    )
    assert h2_tls.tls is not None and h2_tls.tls.alpn == ("h2",)
    own = _compile(
        typed_extension_protocol_options=explicit2,
        transport_socket=tlsconfig.upstream(ca=ca, alpn_protocols=["h2", "custom"]),
    )
    assert own.tls is not None and own.tls.alpn == ("h2", "custom")


def test_what_a_cluster_cannot_use_is_refused_by_path() -> None:
    http3 = _options(explicit_http_config={"http3_protocol_options": {}})
    assert _errors(typed_extension_protocol_options=http3) == [
        f"not supported: {_KEY}.explicit_http_config.http3_protocol_options"
    ]
    flood = _options(explicit_http_config={"http2_protocol_options": {"max_outbound_frames": 5}})
    (error,) = _errors(typed_extension_protocol_options=flood)
    assert error == (
        f"not supported: {_KEY}.explicit_http_config.http2_protocol_options.max_outbound_frames"
        " (a flood limit guards against clients; set it on the connection manager)"
    )
    window = _options(
        explicit_http_config={"http2_protocol_options": {"initial_stream_window_size": 10}}
    )
    assert _errors(typed_extension_protocol_options=window) == [
        f"{_KEY}.explicit_http_config.http2_protocol_options.initial_stream_window_size: "
        "must be 65535-2147483647"
    ]
    both = _options(explicit_http_config={"http2_protocol_options": {}})
    assert _errors(typed_extension_protocol_options=both, http2_protocol_options={}) == [
        "static_resources.clusters[0].http2_protocol_options: set either this or "
        f"{_KEY}.explicit_http_config, not both"
    ]
