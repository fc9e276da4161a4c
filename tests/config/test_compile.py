"""Whole-bootstrap compilation: defaults, cross references, and every error reported at once."""

import pytest

from remora.config import support
from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.http.config import HcmConfig
from remora.proxy.tcp.config import TcpProxyConfig
from remora.proxy.upstream.config import DiscoveryType
from tests.proxy.harness import bootstrap, cluster, http_listener, tcp_listener


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
    http, tcp = (listener.network_filter for listener in config.listeners)
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
    assert "static_resources.clusters[0].type: not supported" in text
    assert "unknown cluster 'nope'" in text
    assert "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster" in text


def test_unsupported_fields_are_rejected_by_path() -> None:
    config = bootstrap([http_listener()], [cluster("backend", [8080], outlier_detection={})])
    config["static_resources"]["listeners"][0]["listener_filters"] = [{"name": "x"}]  # type: ignore[index]
    errors = _errors(config)
    assert "static_resources.listeners[0].listener_filters: not supported" in "\n".join(errors)
    assert any("static_resources.clusters[0].outlier_detection" in e for e in errors)


def test_ignored_fields_warn() -> None:
    config = bootstrap([http_listener()], [cluster("backend", [8080])])
    config["node"] = {"id": "sidecar-1"}
    compiled = compile_bootstrap(parse_dict(config))
    assert any(w.startswith("ignored: node.id") for w in compiled.warnings)


def test_registry_lists_what_is_supported() -> None:
    fields = support.supported_fields()
    assert "route" in fields["envoy.config.route.v3.Route"]
    assert "cluster" in fields["envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"]
