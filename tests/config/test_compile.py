"""Whole-bootstrap compilation: defaults, cross references, and every error reported at once."""

import os
from pathlib import Path

import pytest

from remora.config import support
from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.http.config import HcmConfig
from remora.proxy.tcp.config import TcpProxyConfig
from remora.proxy.upstream.config import DiscoveryType
from tests.proxy.harness import (
    bootstrap,
    cluster,
    file_access_log,
    http_listener,
    tcp_listener,
)


def _errors(config: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(config))
    return [str(e) for e in info.value.errors]


def test_compiles_into_runtime_objects_with_envoy_defaults() -> None:
    config = compile_bootstrap(
        parse_dict(
            bootstrap(
                [http_listener(), tcp_listener("backend")],
                [cluster("backend", [8080, 8081]), cluster("dns", [80], type="STRICT_DNS")],
            )
        )
    )
    http, tcp = (listener.chains[0].network_filter for listener in config.listeners)
    assert isinstance(http, HcmConfig) and isinstance(tcp, TcpProxyConfig)
    assert http.max_request_headers_bytes == 60 * 1024
    assert http.max_headers_count == 100
    assert http.idle_timeout == 3600.0 and http.stream_idle_timeout == 300.0
    assert http.request_timeout is None and not http.accept_http_10
    assert tcp.idle_timeout == 3600.0
    backend = config.clusters["backend"]
    assert [e.port for e in backend.endpoints] == [8080, 8081]
    assert backend.connect_timeout == 1.0 and backend.max_connections == 1024
    assert config.clusters["dns"].discovery is DiscoveryType.STRICT_DNS
    assert config.admin is not None


def test_every_error_is_reported_with_its_path() -> None:
    listener = http_listener(routes=[{"match": {"prefix": "/"}, "route": {"cluster": "nope"}}])
    errors = _errors(
        bootstrap(
            [listener, tcp_listener("missing")],
            [cluster("backend", [8080], type="EDS"), cluster("backend", [8081])],
        )
    )
    text = "\n".join(errors)
    assert "\nnot supported: static_resources.clusters[0].type (EDS needs" in "\n" + text
    assert "unknown cluster 'nope'" in text
    assert "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster" in text


def test_unsupported_fields_are_rejected_by_path() -> None:
    unsupported = {"monitors": [{"name": "m"}]}
    config = bootstrap(
        [http_listener()], [cluster("backend", [8080], outlier_detection=unsupported)]
    )
    config["static_resources"]["listeners"][0]["use_original_dst"] = True  # type: ignore[index]
    config["static_resources"]["listeners"][0]["listener_filters"] = [{"name": "x"}]  # type: ignore[index]
    errors = _errors(config)
    assert "not supported: static_resources.listeners[0].use_original_dst" in errors
    assert (
        "static_resources.listeners[0].listener_filters[0]: not supported: listener filter 'x'"
        in errors
    )
    assert any("static_resources.clusters[0].outlier_detection.monitors" in e for e in errors)


def test_ignored_fields_warn() -> None:
    config = bootstrap([http_listener()], [cluster("backend", [8080])])
    config["node"] = {"id": "sidecar-1"}
    compiled = compile_bootstrap(parse_dict(config))
    assert any(w.startswith("ignored: node.id") for w in compiled.warnings)


def test_registry_lists_what_is_supported() -> None:
    fields = support.supported_fields()
    assert "route" in fields["envoy.config.route.v3.Route"]
    assert "cluster" in fields["envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"]


def _all_errors(config: dict[str, object]) -> list[str]:
    """What `remora proxy --validate` lists: parse errors and compile errors in one pass."""
    from remora.config.bootstrap import parse_dict_lenient

    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(*parse_dict_lenient(config))
    return [str(e) for e in info.value.errors]


def test_a_typo_an_unsupported_field_and_an_unknown_cluster_are_all_listed() -> None:
    listener = http_listener(
        routes=[{"match": {"prefix": "/"}, "route": {"cluster": "ghost"}}], add_user_agent=True
    )
    config = bootstrap([listener], [cluster("backend", [8080], conect_timeout="1s")])
    assert _all_errors(config) == [
        "static_resources.clusters[0].conect_timeout: unknown field 'conect_timeout' in "
        "envoy.config.cluster.v3.Cluster",
        "not supported: static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
        ".add_user_agent",
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config: "
        "route references unknown cluster 'ghost'",
    ]


def test_a_cluster_rejected_for_its_own_reason_still_counts_as_defined() -> None:
    routes = [
        {"match": {"prefix": "/a"}, "route": {"cluster": "dns"}},
        {"match": {"prefix": "/b"}, "route": {"cluster": "port"}},
    ]
    config = bootstrap(
        [http_listener(routes=routes), tcp_listener("dns")],
        [cluster("dns", [80], type="LOGICAL_DNS"), cluster("port", [99999])],
    )
    errors = _all_errors(config)
    assert errors == [
        "not supported: static_resources.clusters[0].type (LOGICAL_DNS)",
        "static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint"
        ".address.socket_address.port_value: must be 0-65535",
    ]


def test_addresses_are_ip_literals_except_for_dns_clusters() -> None:
    listener = http_listener(host="999.1.1.1")
    config = bootstrap([listener], [cluster("backend", [8080])])
    config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][  # type: ignore[index]
        0
    ]["endpoint"]["address"]["socket_address"]["address"] = "localhost"
    assert _all_errors(config) == [
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint"
        ".address.socket_address.address: 'localhost' is not an IP address (names are resolved "
        "only for STRICT_DNS cluster endpoints)",
        "static_resources.listeners[0].address.socket_address.address: '999.1.1.1' is not an IP "
        "address (names are resolved only for STRICT_DNS cluster endpoints)",
    ]
    dns = cluster("backend", [8080], type="STRICT_DNS")
    dns["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]["address"] = "localhost"
    assert compile_bootstrap(parse_dict(bootstrap([http_listener()], [dns]))).clusters["backend"]
    six = compile_bootstrap(parse_dict(bootstrap([http_listener(host="::1")], [dns])))
    assert six.listeners[0].address.host == "::1"


def test_an_unimplemented_envoy_http_filter_is_refused_once_by_path() -> None:
    listener = http_listener()
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"].insert(
        0,
        {
            "name": "envoy.filters.http.cors",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
            },
        },
    )
    assert _all_errors(bootstrap([listener], [cluster("backend", [8080])])) == [
        "not supported: static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
        ".http_filters[0].typed_config (@type envoy.extensions.filters.http.cors.v3.Cors)"
    ]


def test_a_refused_bootstrap_leaves_no_access_log_file_open(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    config = bootstrap(
        [
            http_listener(access_log=file_access_log(log, "%RESPONSE_CODE%\n")),
            tcp_listener("nosuch"),
        ],
        [cluster("backend", [8080])],
    )

    def open_on_log() -> int:
        fds = os.listdir("/proc/self/fd")
        return sum(1 for fd in fds if _readlink(f"/proc/self/fd/{fd}") == str(log))

    for _ in range(3):  # as a watched file that stays broken is reloaded again and again
        assert "nosuch" in " ".join(_errors(config))
    assert log.exists() and open_on_log() == 0


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def test_http2_options_compile_and_bad_ones_name_their_field() -> None:
    good = bootstrap(
        [
            http_listener(
                codec_type="HTTP2",
                http2_protocol_options={
                    "max_concurrent_streams": 7,
                    "initial_stream_window_size": 131072,
                    "connection_keepalive": {"interval": "5s", "timeout": "1s"},
                },
            )
        ],
        [cluster("backend", [8080])],
    )
    hcm = compile_bootstrap(parse_dict(good)).listeners[0].all_chains[0].network_filter
    assert isinstance(hcm, HcmConfig)
    assert hcm.codec == 2
    assert hcm.http2.max_concurrent_streams == 7
    assert hcm.http2.initial_stream_window_size == 131072
    assert hcm.http2.initial_connection_window_size == 1 << 20
    assert (hcm.http2.keepalive_interval, hcm.http2.keepalive_timeout) == (5.0, 1.0)
    prefix = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
    bad = bootstrap(
        [
            http_listener(
                codec_type="HTTP3",
                http2_protocol_options={
                    "max_concurrent_streams": 0,
                    "initial_stream_window_size": 100,
                    "allow_connect": True,
                    "connection_keepalive": {"interval": "5s"},
                },
            )
        ],
        [cluster("backend", [8080])],
    )
    text = "\n".join(_errors(bad))
    assert f"not supported: {prefix}codec_type (HTTP3)" in text
    assert f"{prefix}http2_protocol_options.max_concurrent_streams" in text
    assert f"{prefix}http2_protocol_options.initial_stream_window_size" in text
    assert f"not supported: {prefix}http2_protocol_options.allow_connect" in text
    assert f"{prefix}http2_protocol_options.connection_keepalive.timeout" in text
