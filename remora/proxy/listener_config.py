"""Listener config: Envoy's `Listener` with one filter chain ending in tcp_proxy or the HCM."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from remora.config import support
from remora.config.common import SocketAddress, seconds, socket_address
from remora.config.errors import ConfigError, ErrorCollector
from remora.proxy.http.config import HcmConfig
from remora.proxy.http.hcm_compiler import compile_hcm
from remora.proxy.tcp.config import TcpProxyConfig, compile_tcp_proxy
from remora.proxy.tls.compiler import compile_transport_socket
from remora.proxy.tls.config import DEFAULT_HANDSHAKE_TIMEOUT, TlsContext

support.register(
    "envoy.config.listener.v3.Listener",
    {
        "name",
        "address",
        "filter_chains",
        "stat_prefix",
        "per_connection_buffer_limit_bytes",
        "tcp_backlog_size",
    },
)
support.register(
    "envoy.config.listener.v3.FilterChain",
    {"filters", "name", "transport_socket", "transport_socket_connect_timeout"},
)
support.register("envoy.config.listener.v3.Filter", {"name", "typed_config"})


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    address: SocketAddress
    stat_prefix: str
    network_filter: HcmConfig | TcpProxyConfig
    buffer_limit: int
    backlog: int
    tls: TlsContext | None = None  # the filter chain's transport socket; None is plaintext


def compile_listener(
    listener: listener_pb2.Listener,
    path: str,
    errors: ErrorCollector,
    known_clusters: Collection[str] | None = None,
) -> ListenerConfig | None:
    """`known_clusters` (a static bootstrap's cluster names) checks the filter's references
    too, even when the listener fails for another reason, so one pass lists both."""
    before = len(errors.errors)
    if not listener.name:
        errors.add(f"{path}.name", "a listener needs a name")
    address = socket_address(listener.address, f"{path}.address", errors)
    network_filter: HcmConfig | TcpProxyConfig | None = None
    tls: TlsContext | None = None
    if len(listener.filter_chains) != 1:
        errors.add(
            f"{path}.filter_chains",
            "exactly one filter chain is supported (filter_chain_match is not)",
        )
    else:
        chain = listener.filter_chains[0]
        network_filter = _compile_chain(chain, f"{path}.filter_chains[0]", errors)
        if chain.HasField("transport_socket"):
            timeout = DEFAULT_HANDSHAKE_TIMEOUT
            if chain.HasField("transport_socket_connect_timeout"):
                timeout = seconds(chain.transport_socket_connect_timeout)
                if timeout <= 0:
                    errors.add(
                        f"{path}.filter_chains[0].transport_socket_connect_timeout",
                        "must be positive",
                    )
            tls = compile_transport_socket(
                chain.transport_socket,
                f"{path}.filter_chains[0].transport_socket",
                errors,
                server_side=True,
                handshake_timeout=timeout,
            )
    if network_filter is not None and known_clusters is not None:
        _check_cluster_references(network_filter, path, known_clusters, errors)
    if len(errors.errors) > before or address is None or network_filter is None:
        return None
    return ListenerConfig(
        name=listener.name,
        address=address,
        stat_prefix=listener.stat_prefix or str(address),
        network_filter=network_filter,
        buffer_limit=(
            listener.per_connection_buffer_limit_bytes.value
            if listener.HasField("per_connection_buffer_limit_bytes")
            else 1024 * 1024
        ),
        backlog=listener.tcp_backlog_size.value if listener.HasField("tcp_backlog_size") else 1024,
        tls=tls,
    )


def _compile_chain(
    chain: listener_pb2.FilterChain, path: str, errors: ErrorCollector
) -> HcmConfig | TcpProxyConfig | None:
    filters = list(chain.filters)
    if len(filters) != 1:
        errors.add(
            f"{path}.filters",
            "exactly one network filter is supported: "
            "envoy.filters.network.tcp_proxy or envoy.filters.network.http_connection_manager",
        )
        return None
    filter_path = f"{path}.filters[0].typed_config"
    try:
        typed = support.unpack_any(filters[0].typed_config, filter_path)
    except ConfigError as exc:
        errors.extend([exc])
        return None
    if isinstance(typed, hcm_pb2.HttpConnectionManager):
        return compile_hcm(typed, filter_path, errors)
    if isinstance(typed, tcp_proxy_pb2.TcpProxy):
        return compile_tcp_proxy(typed, filter_path, errors)
    errors.add(filter_path, f"not supported: {filter_path} (@type {typed.DESCRIPTOR.full_name})")
    return None


def _check_cluster_references(
    network_filter: HcmConfig | TcpProxyConfig,
    path: str,
    clusters: Collection[str],
    errors: ErrorCollector,
) -> None:
    filter_path = f"{path}.filter_chains[0].filters[0].typed_config"
    if isinstance(network_filter, HcmConfig):
        for cluster in sorted(network_filter.route_table.cluster_names):
            if cluster not in clusters:
                errors.add(
                    f"{filter_path}.route_config", f"route references unknown cluster {cluster!r}"
                )
    elif network_filter.cluster not in clusters:
        errors.add(f"{filter_path}.cluster", f"unknown cluster {network_filter.cluster!r}")


def check_listener_set(
    listeners: Sequence[tuple[str, ListenerConfig]],
    errors: ErrorCollector,
    taken: Mapping[SocketAddress, str] | None = None,
) -> None:
    """The cross-resource checks a listener set must pass, for a bootstrap and an xDS update
    alike: unique names, and no two listeners on one address (`taken` holds addresses already
    in use by others, such as the bootstrap's static listeners, with their names). Port 0 asks
    the kernel for a free port, so it never clashes."""
    names: set[str] = set()
    addresses: dict[SocketAddress, str] = dict(taken or {})
    for path, listener in listeners:
        if listener.name in names:
            errors.add(f"{path}.name", f"duplicate listener name {listener.name!r}")
        names.add(listener.name)
        other = addresses.get(listener.address)
        if other is not None and listener.address.port != 0:
            errors.add(
                f"{path}.address",
                f"duplicate listener address {listener.address} (listener {other!r} has it)",
            )
        addresses.setdefault(listener.address, listener.name)
