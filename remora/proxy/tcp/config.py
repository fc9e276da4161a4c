"""`envoy.filters.network.tcp_proxy` compiled into an immutable `TcpProxyConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from remora.config import support
from remora.config.common import optional_seconds
from remora.config.errors import ErrorCollector
from remora.proxy.accesslog import AccessLogger, compile_access_logs

support.register(
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    {"stat_prefix", "cluster", "idle_timeout", "access_log", "max_connect_attempts", "hash_policy"},
)
support.register("envoy.type.v3.HashPolicy", {"source_ip"})
support.register("envoy.type.v3.HashPolicy.SourceIp", set())

_DEFAULT_IDLE_TIMEOUT = 3600.0  # Envoy's default: one hour


@dataclass(frozen=True, slots=True)
class TcpProxyConfig:
    stat_prefix: str
    cluster: str
    idle_timeout: float | None
    access_logs: tuple[AccessLogger, ...]
    # hash_policy source_ip: the key RING_HASH and MAGLEV clusters pick by is the client's IP.
    hash_source_ip: bool = False


def compile_tcp_proxy(
    config: tcp_proxy_pb2.TcpProxy, path: str, errors: ErrorCollector
) -> TcpProxyConfig | None:
    before = len(errors.errors)
    if not config.stat_prefix:
        errors.add(f"{path}.stat_prefix", "must not be empty")
    if not config.cluster:
        errors.add(f"{path}.cluster", "a cluster is required (weighted_clusters is not supported)")
    if config.HasField("max_connect_attempts") and config.max_connect_attempts.value != 1:
        errors.add(f"{path}.max_connect_attempts", "not supported: only 1 attempt")
    if len(config.hash_policy) > 1:
        errors.add(f"{path}.hash_policy", "at most one hash policy (as in Envoy)")
    access_logs = compile_access_logs(config.access_log, f"{path}.access_log", errors)
    if len(errors.errors) > before:
        return None
    return TcpProxyConfig(
        stat_prefix=config.stat_prefix,
        cluster=config.cluster,
        idle_timeout=optional_seconds(config, "idle_timeout", _DEFAULT_IDLE_TIMEOUT),
        access_logs=access_logs,
        hash_source_ip=any(p.HasField("source_ip") for p in config.hash_policy),
    )
