"""The bootstrap's `dynamic_resources`: where the proxy's ADS stream goes and what it carries.

remora supports one shape, the one meshes use: `ads_config` over gRPC (SotW `GRPC` or
`DELTA_GRPC`) to a static cluster (`envoy_grpc`) or a `host:port` (`google_grpc`), with
`lds_config` and `cds_config` set to `ads: {}`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import config_source_pb2

from remora.config import support
from remora.config.errors import ErrorCollector
from remora.proxy.upstream.config import ClusterConfig

support.register("envoy.config.core.v3.Node", {"id", "cluster", "metadata", "user_agent_name"})
support.register(
    "envoy.config.bootstrap.v3.Bootstrap.DynamicResources",
    {"lds_config", "cds_config", "ads_config"},
)
support.register(
    "envoy.config.core.v3.ApiConfigSource",
    {"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"},
)
support.register("envoy.config.core.v3.GrpcService", {"envoy_grpc", "google_grpc", "timeout"})
support.register("envoy.config.core.v3.GrpcService.EnvoyGrpc", {"cluster_name"})
support.register("envoy.config.core.v3.GrpcService.GoogleGrpc", {"target_uri", "stat_prefix"})


@dataclass(frozen=True, slots=True)
class AdsConfig:
    target: str  # host:port of the management server
    delta: bool  # DELTA_GRPC (incremental) rather than GRPC (state of the world)
    lds: bool  # listeners come over ADS
    cds: bool  # clusters come over ADS


def compile_dynamic_resources(
    bootstrap: bootstrap_pb2.Bootstrap,
    clusters: Mapping[str, ClusterConfig],
    errors: ErrorCollector,
    failed_clusters: Collection[str] = (),
) -> AdsConfig | None:
    """`failed_clusters` were defined but rejected (and reported) already: naming one is no
    second error."""
    path = "dynamic_resources"
    dynamic = bootstrap.dynamic_resources
    before = len(errors.errors)
    for name in ("lds_config", "cds_config"):
        if dynamic.HasField(name) and not getattr(dynamic, name).HasField("ads"):
            errors.add(f"{path}.{name}", "not supported: only `ads: {}` (the ADS stream)")
    if not dynamic.HasField("ads_config"):
        errors.add(f"{path}.ads_config", "required with lds_config/cds_config over ADS")
        return None
    ads = dynamic.ads_config
    source = config_source_pb2.ApiConfigSource
    if ads.api_type not in (source.GRPC, source.DELTA_GRPC):
        name = source.ApiType.Name(ads.api_type)
        errors.add(f"{path}.ads_config.api_type", f"not supported: {name} (GRPC or DELTA_GRPC)")
    if len(ads.grpc_services) != 1:
        errors.add(f"{path}.ads_config.grpc_services", "exactly one gRPC service is supported")
        return None
    service = ads.grpc_services[0]
    service_path = f"{path}.ads_config.grpc_services[0]"
    target = ""
    if service.HasField("envoy_grpc"):
        cluster = clusters.get(service.envoy_grpc.cluster_name)
        if cluster is None and service.envoy_grpc.cluster_name in failed_clusters:
            pass
        elif cluster is None or not cluster.endpoints:
            errors.add(
                f"{service_path}.envoy_grpc.cluster_name",
                f"must name a static cluster with an endpoint, got "
                f"{service.envoy_grpc.cluster_name!r}",
            )
        else:
            endpoint = cluster.endpoints[0]
            host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
            target = f"{host}:{endpoint.port}"
    elif service.HasField("google_grpc"):
        target = service.google_grpc.target_uri
        if not target:
            errors.add(f"{service_path}.google_grpc.target_uri", "must not be empty")
    else:
        errors.add(service_path, "envoy_grpc or google_grpc is required")
    if not bootstrap.node.id:
        errors.add("node.id", "required with dynamic_resources (the control plane keys on it)")
    if len(errors.errors) > before:
        return None
    return AdsConfig(
        target=target,
        delta=ads.api_type == source.DELTA_GRPC,
        lds=dynamic.HasField("lds_config"),
        cds=dynamic.HasField("cds_config"),
    )
