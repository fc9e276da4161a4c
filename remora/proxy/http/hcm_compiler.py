"""`envoy.filters.network.http_connection_manager` proto -> `HcmConfig`.

Config time only: the run-time types live in remora/proxy/http/config.py, which is compiled with
the hot path; this module stays interpreted (docs/architecture.md, "The compiled hot path").
"""

from __future__ import annotations

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2 as http_wasm_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from remora.config import support
from remora.config.common import optional_seconds
from remora.config.errors import ConfigError, ErrorCollector
from remora.proxy.accesslog import compile_access_logs
from remora.proxy.http.config import (
    CODEC_AUTO,
    CODEC_HTTP1,
    CODEC_HTTP2,
    HcmConfig,
    ServerHeader,
)
from remora.proxy.http.filter_chain import ChainFactory
from remora.proxy.http.h2_options_compiler import compile_http2_options
from remora.proxy.http.route import compile_route_configuration
from remora.proxy.rbac.compiler import compile_http_rbac
from remora.proxy.rbac.filter import RbacConfig
from remora.proxy.wasm.config import WASM_FILTER, compile_wasm_filter
from remora.proxy.wasm.plugin import WasmPlugin

_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
support.register(
    _HCM,
    {
        "codec_type",
        "stat_prefix",
        "route_config",
        "rds",
        "http_filters",
        "common_http_protocol_options",
        "http_protocol_options",
        "server_name",
        "server_header_transformation",
        "max_request_headers_kb",
        "stream_idle_timeout",
        "request_timeout",
        "request_headers_timeout",
        "drain_timeout",
        "access_log",
        "use_remote_address",
        "xff_num_trusted_hops",
        "skip_xff_append",
        "via",
        "generate_request_id",
        "preserve_external_request_id",
        "always_set_request_id_in_response",
        "upgrade_configs",
        "forward_client_cert_details",
        "set_current_client_cert_details",
        "http2_protocol_options",
    },
)
support.register(f"{_HCM}.SetCurrentClientCertDetails", {"subject", "cert", "dns", "uri"})
support.register(f"{_HCM}.UpgradeConfig", {"upgrade_type", "enabled"})
support.register(
    "envoy.extensions.filters.network.http_connection_manager.v3.Rds",
    {"config_source", "route_config_name"},
)
support.register(
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
    {"name", "typed_config"},
)
support.register("envoy.extensions.filters.http.router.v3.Router", set())
support.register(
    "envoy.config.core.v3.HttpProtocolOptions",
    {
        "idle_timeout",
        "max_headers_count",
        "max_requests_per_connection",
        "max_connection_duration",
        "max_stream_duration",
    },
)
support.register(
    "envoy.config.core.v3.Http1ProtocolOptions", {"accept_http_10", "default_host_for_http_10"}
)

ROUTER_FILTER = "envoy.extensions.filters.http.router.v3.Router"
RBAC_FILTER = "envoy.extensions.filters.http.rbac.v3.RBAC"


def compile_hcm(
    config: hcm_pb2.HttpConnectionManager, path: str, errors: ErrorCollector
) -> HcmConfig | None:
    before = len(errors.errors)
    if config.codec_type not in (CODEC_AUTO, CODEC_HTTP1, CODEC_HTTP2):
        name = hcm_pb2.HttpConnectionManager.CodecType.Name(config.codec_type)
        errors.add(f"{path}.codec_type", f"not supported: {path}.codec_type ({name})")
    if not config.stat_prefix:
        errors.add(f"{path}.stat_prefix", "must not be empty")
    rds_name = ""
    if config.HasField("rds"):
        rds_name = config.rds.route_config_name
        if not rds_name:
            errors.add(f"{path}.rds.route_config_name", "must not be empty")
        if not config.rds.config_source.HasField("ads"):
            errors.add(
                f"{path}.rds.config_source", "not supported: only `ads: {}` (routes over ADS)"
            )
    elif not config.HasField("route_config"):
        errors.add(f"{path}.route_config", "an inline route_config or rds is required")
    rbac, filter_chain = _compile_http_filters(config, path, errors)
    route_table = compile_route_configuration(config.route_config, f"{path}.route_config", errors)
    access_logs = compile_access_logs(config.access_log, f"{path}.access_log", errors)
    upgrades: set[str] = set()
    for i, upgrade in enumerate(config.upgrade_configs):
        if not upgrade.upgrade_type:
            errors.add(f"{path}.upgrade_configs[{i}].upgrade_type", "must not be empty")
        if not upgrade.HasField("enabled") or upgrade.enabled.value:
            upgrades.add(upgrade.upgrade_type.lower())
    common = config.common_http_protocol_options
    max_kb = (
        config.max_request_headers_kb.value if config.HasField("max_request_headers_kb") else 60
    )
    if not 1 <= max_kb <= 8192:
        errors.add(f"{path}.max_request_headers_kb", "must be 1-8192")
    if common.HasField("max_response_headers_kb"):
        field_path = f"{path}.common_http_protocol_options.max_response_headers_kb"
        errors.add(
            field_path,
            f"not supported: {field_path} (it limits upstream responses: set it on the cluster)",
        )
    http2 = compile_http2_options(
        config.http2_protocol_options, f"{path}.http2_protocol_options", errors
    )
    if len(errors.errors) > before:
        return None
    return HcmConfig(
        stat_prefix=config.stat_prefix,
        route_table=route_table,
        access_logs=access_logs,
        server_name=config.server_name or "remora",
        server_header=ServerHeader(config.server_header_transformation),
        max_request_headers_bytes=max_kb * 1024,
        max_headers_count=(
            common.max_headers_count.value if common.HasField("max_headers_count") else 100
        ),
        idle_timeout=optional_seconds(common, "idle_timeout", 3600.0),
        max_connection_duration=optional_seconds(common, "max_connection_duration", None),
        max_stream_duration=optional_seconds(common, "max_stream_duration", None),
        stream_idle_timeout=optional_seconds(config, "stream_idle_timeout", 300.0),
        request_timeout=optional_seconds(config, "request_timeout", None),
        request_headers_timeout=optional_seconds(config, "request_headers_timeout", None),
        drain_timeout=optional_seconds(config, "drain_timeout", 5.0) or 0.0,
        max_requests_per_connection=(
            common.max_requests_per_connection.value or None
            if common.HasField("max_requests_per_connection")
            else None
        ),
        accept_http_10=config.http_protocol_options.accept_http_10,
        default_host_for_http_10=config.http_protocol_options.default_host_for_http_10,
        use_remote_address=(
            config.use_remote_address.value if config.HasField("use_remote_address") else False
        ),
        xff_num_trusted_hops=config.xff_num_trusted_hops,
        skip_xff_append=config.skip_xff_append,
        via=config.via,
        generate_request_id=(
            config.generate_request_id.value if config.HasField("generate_request_id") else True
        ),
        preserve_external_request_id=config.preserve_external_request_id,
        always_set_request_id_in_response=config.always_set_request_id_in_response,
        upgrade_types=frozenset(upgrades),
        rds_name=rds_name,
        forward_client_cert=config.forward_client_cert_details,
        client_cert_details=_client_cert_details(config.set_current_client_cert_details),
        rbac=rbac,
        filter_chain=filter_chain,
        codec=config.codec_type,
        http2=http2,
    )


def _client_cert_details(
    details: hcm_pb2.HttpConnectionManager.SetCurrentClientCertDetails,
) -> frozenset[str]:
    chosen = {name for name in ("cert", "dns", "uri") if getattr(details, name)}
    if details.subject.value:
        chosen.add("subject")
    return frozenset(chosen)


def _compile_http_filters(
    config: hcm_pb2.HttpConnectionManager, path: str, errors: ErrorCollector
) -> tuple[RbacConfig | None, ChainFactory | None]:
    """The router last; before it, Wasm filters and at most one `envoy.filters.http.rbac`."""
    filters = list(config.http_filters)
    if not filters:
        errors.add(
            f"{path}.http_filters", "the router filter (envoy.filters.http.router) is required"
        )
        return None, None
    rbac: RbacConfig | None = None
    plugins: list[WasmPlugin] = []
    rbac_first = True
    for i, http_filter in enumerate(filters):
        type_name = support.any_type_name(http_filter.typed_config)
        filter_path = f"{path}.http_filters[{i}]"
        if type_name == WASM_FILTER:
            try:
                typed_wasm = support.unpack_any(
                    http_filter.typed_config, f"{filter_path}.typed_config"
                )
            except ConfigError as exc:
                errors.extend([exc])
                continue
            assert isinstance(typed_wasm, http_wasm_pb2.Wasm)
            plugin = compile_wasm_filter(
                typed_wasm, http_filter.name, f"{filter_path}.typed_config", errors
            )
            if plugin is not None:
                plugins.append(plugin)
            if rbac is None:
                rbac_first = False
            continue
        if type_name == ROUTER_FILTER:
            if i != len(filters) - 1:
                errors.add(filter_path, "the router filter must be the last HTTP filter")
        elif type_name == RBAC_FILTER:
            if rbac is not None:
                errors.add(filter_path, "one envoy.filters.http.rbac per connection manager")
                continue
            try:
                typed = support.unpack_any(http_filter.typed_config, f"{filter_path}.typed_config")
            except ConfigError as exc:
                errors.extend([exc])
                continue
            assert isinstance(typed, http_rbac_pb2.RBAC)
            rbac = compile_http_rbac(typed, f"{filter_path}.typed_config", errors)
        elif not type_name or support.supported_fields().get(type_name) is not None:
            errors.add(filter_path, f"not supported: {filter_path} ({http_filter.name})")
    if support.any_type_name(filters[-1].typed_config) != ROUTER_FILTER:
        errors.add(
            f"{path}.http_filters[{len(filters) - 1}]",
            "the last HTTP filter must be the router (envoy.filters.http.router)",
        )
    chain = ChainFactory(tuple(plugins), rbac_first) if plugins else None
    return rbac, chain
