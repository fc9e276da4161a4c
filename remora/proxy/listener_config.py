"""Listener config: Envoy's `Listener`, its filter chains and the `tls_inspector` listener filter.

Each filter chain ends in tcp_proxy or the HCM and may have a TLS transport socket; a listener
with several chains picks one per connection by `filter_chain_match`
(remora/proxy/filter_chain_match.py), and `default_filter_chain` takes the connections no chain
matches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from remora.config import support
from remora.config.common import SocketAddress, cidr_range, seconds, socket_address
from remora.config.errors import ConfigError, ErrorCollector
from remora.proxy.accesslog import AccessLogger
from remora.proxy.filter_chain_match import ChainMatch, Network
from remora.proxy.http.config import HcmConfig
from remora.proxy.http.hcm_compiler import compile_hcm
from remora.proxy.rbac.compiler import compile_network_rbac
from remora.proxy.rbac.filter import RbacConfig
from remora.proxy.tcp.config import TcpProxyConfig, compile_tcp_proxy
from remora.proxy.tls.client_hello import MAX_CLIENT_HELLO
from remora.proxy.tls.compiler import compile_transport_socket
from remora.proxy.tls.config import DEFAULT_HANDSHAKE_TIMEOUT, TlsContext

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
_TLS_INSPECTOR_TYPE = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"

support.register(
    "envoy.config.listener.v3.Listener",
    {
        "name",
        "address",
        "filter_chains",
        "default_filter_chain",
        "listener_filters",
        "listener_filters_timeout",
        "continue_on_listener_filters_timeout",
        "stat_prefix",
        "per_connection_buffer_limit_bytes",
        "tcp_backlog_size",
    },
)
support.register(
    "envoy.config.listener.v3.FilterChain",
    {
        "filters",
        "name",
        "filter_chain_match",
        "transport_socket",
        "transport_socket_connect_timeout",
    },
)
support.register(
    "envoy.config.listener.v3.FilterChainMatch",
    {
        "destination_port",
        "prefix_ranges",
        "direct_source_prefix_ranges",
        "source_type",
        "source_prefix_ranges",
        "source_ports",
        "server_names",
        "transport_protocol",
        "application_protocols",
    },
)
support.register("envoy.config.core.v3.CidrRange", {"address_prefix", "prefix_len"})
support.register("envoy.config.listener.v3.Filter", {"name", "typed_config"})
support.register("envoy.config.listener.v3.ListenerFilter", {"name", "typed_config"})
support.register(_TLS_INSPECTOR_TYPE, {"max_client_hello_size"})

# Envoy's default `listener_filters_timeout`.
DEFAULT_LISTENER_FILTERS_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class FilterChainConfig:
    name: str
    match: ChainMatch
    network_filter: HcmConfig | TcpProxyConfig
    tls: TlsContext | None = None  # the chain's transport socket; None is plaintext
    # envoy.filters.network.rbac before the network filter, and its stats scope.
    rbac: tuple[RbacConfig, str] | None = None


@dataclass(frozen=True, slots=True)
class InspectorConfig:
    """`tls_inspector`: read the ClientHello (up to `max_client_hello` bytes) before choosing."""

    max_client_hello: int = MAX_CLIENT_HELLO
    timeout: float | None = DEFAULT_LISTENER_FILTERS_TIMEOUT
    continue_on_timeout: bool = False


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    address: SocketAddress
    stat_prefix: str
    chains: tuple[FilterChainConfig, ...]
    buffer_limit: int
    backlog: int
    default_chain: FilterChainConfig | None = None
    inspector: InspectorConfig | None = None

    @property
    def all_chains(self) -> tuple[FilterChainConfig, ...]:
        return self.chains if self.default_chain is None else (*self.chains, self.default_chain)

    @property
    def single_chain(self) -> FilterChainConfig | None:
        """The one chain every connection takes, when nothing needs choosing."""
        if self.inspector is not None:
            return None
        if len(self.chains) == 1 and self.default_chain is None and self.chains[0].match == _ANY:
            return self.chains[0]
        if not self.chains and self.default_chain is not None:
            return self.default_chain
        return None

    @property
    def access_logs(self) -> tuple[AccessLogger, ...]:
        return tuple(log for chain in self.all_chains for log in chain.network_filter.access_logs)

    @property
    def hcms(self) -> tuple[HcmConfig, ...]:
        return tuple(
            chain.network_filter
            for chain in self.all_chains
            if isinstance(chain.network_filter, HcmConfig)
        )

    def with_tls_swapped(self, old: TlsContext, new: TlsContext) -> ListenerConfig:
        """This listener with `new` wherever a chain has `old` (itself if none has)."""

        def swapped(chain: FilterChainConfig) -> FilterChainConfig:
            return dataclasses.replace(chain, tls=new) if chain.tls is old else chain

        chains = tuple(swapped(chain) for chain in self.chains)
        default = None if self.default_chain is None else swapped(self.default_chain)
        if all(a is b for a, b in zip(chains, self.chains, strict=True)) and (
            default is self.default_chain
        ):
            return self
        return dataclasses.replace(self, chains=chains, default_chain=default)


_ANY = ChainMatch()


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
    inspector = _compile_listener_filters(listener, path, errors)
    chains: list[FilterChainConfig] = []
    seen: list[tuple[int, ChainMatch]] = []
    for index, chain in enumerate(listener.filter_chains):
        chain_path = f"{path}.filter_chains[{index}]"
        compiled = _compile_chain(chain, chain_path, errors, known_clusters)
        if compiled is None:
            if inspector is None and chain.filter_chain_match.server_names:
                _needs_inspector(chain_path, errors)
            continue
        for other_index, other in seen:
            shared = _overlap(other, compiled.match)
            if shared is not None:
                errors.add(
                    f"{chain_path}.filter_chain_match",
                    f"the same matching rules as filter_chains[{other_index}]{shared}: "
                    "multiple filter chains with the same matching rules are not allowed",
                )
                break
        seen.append((index, compiled.match))
        if compiled.match.needs_client_hello and inspector is None:
            _needs_inspector(chain_path, errors)
        chains.append(compiled)
    default_chain = None
    if listener.HasField("default_filter_chain"):
        default_path = f"{path}.default_filter_chain"
        if listener.default_filter_chain.HasField("filter_chain_match"):
            errors.add(f"{default_path}.filter_chain_match", "the default chain has no match")
        default_chain = _compile_chain(
            listener.default_filter_chain, default_path, errors, known_clusters
        )
    if not listener.filter_chains and not listener.HasField("default_filter_chain"):
        errors.add(f"{path}.filter_chains", "a listener needs a filter chain")
    if len(errors.errors) > before or address is None:
        return None
    return ListenerConfig(
        name=listener.name,
        address=address,
        # Envoy's default: the address, with ':' made '_' as its stat names make it
        # (listener.127.0.0.1_10000., listener.[__1]_80.), so tag extraction finds it whole.
        stat_prefix=listener.stat_prefix or str(address).replace(":", "_"),
        chains=tuple(chains),
        default_chain=default_chain,
        inspector=inspector,
        buffer_limit=(
            listener.per_connection_buffer_limit_bytes.value
            if listener.HasField("per_connection_buffer_limit_bytes")
            else 1024 * 1024
        ),
        backlog=listener.tcp_backlog_size.value if listener.HasField("tcp_backlog_size") else 1024,
    )


_LIST_FIELDS = (
    "prefix_ranges",
    "server_names",
    "application_protocols",
    "direct_source_prefix_ranges",
    "source_prefix_ranges",
    "source_ports",
)


def _overlap(a: ChainMatch, b: ChainMatch) -> str | None:
    """Whether a connection could match both equally (Envoy refuses such a listener): every
    single criterion equal, and each list criterion either the same set or sharing a value.
    Returns "" or " (for <values>)", None when they never tie."""
    if (a.destination_port, a.transport_protocol, a.source_type) != (
        b.destination_port,
        b.transport_protocol,
        b.source_type,
    ):
        return None
    shared_values: list[str] = []
    for name in _LIST_FIELDS:
        left, right = set(getattr(a, name)), set(getattr(b, name))
        if left == right:
            continue
        common = left & right
        if not common:
            return None
        shared_values.extend(str(value) for value in sorted(common, key=str))
    return f" (for {', '.join(shared_values)})" if shared_values else ""


def _needs_inspector(chain_path: str, errors: ErrorCollector) -> None:
    errors.add(
        f"{chain_path}.filter_chain_match",
        "server_names, application_protocols and transport_protocol: tls are only "
        f"known from the ClientHello: add the {TLS_INSPECTOR} listener filter",
    )


def _compile_listener_filters(
    listener: listener_pb2.Listener, path: str, errors: ErrorCollector
) -> InspectorConfig | None:
    inspector: InspectorConfig | None = None
    timeout: float | None = DEFAULT_LISTENER_FILTERS_TIMEOUT
    if listener.HasField("listener_filters_timeout"):
        timeout = seconds(listener.listener_filters_timeout) or None  # 0 disables, as in Envoy
    for index, entry in enumerate(listener.listener_filters):
        filter_path = f"{path}.listener_filters[{index}]"
        typed_name = entry.typed_config.type_url.rpartition("/")[2]
        if entry.name != TLS_INSPECTOR and typed_name != _TLS_INSPECTOR_TYPE:
            errors.add(filter_path, f"not supported: listener filter {entry.name!r}")
            continue
        if inspector is not None:
            errors.add(filter_path, f"{TLS_INSPECTOR} is listed twice")
            continue
        limit = MAX_CLIENT_HELLO
        if entry.HasField("typed_config"):
            try:
                typed = support.unpack_any(entry.typed_config, f"{filter_path}.typed_config")
            except ConfigError as exc:
                errors.extend([exc])
                continue
            if not isinstance(typed, tls_inspector_pb2.TlsInspector):
                errors.add(f"{filter_path}.typed_config", f"expected {_TLS_INSPECTOR_TYPE}")
                continue
            if typed.HasField("max_client_hello_size"):
                limit = typed.max_client_hello_size.value
                if not 255 <= limit <= 1024 * 1024:
                    errors.add(
                        f"{filter_path}.typed_config.max_client_hello_size",
                        "must be between 255 and 1048576",
                    )
        inspector = InspectorConfig(limit, timeout, listener.continue_on_listener_filters_timeout)
    return inspector


def _compile_chain(
    chain: listener_pb2.FilterChain,
    path: str,
    errors: ErrorCollector,
    known_clusters: Collection[str] | None,
) -> FilterChainConfig | None:
    before = len(errors.errors)
    network_filter, rbac = _compile_network_filters(chain, path, errors)
    if network_filter is not None and known_clusters is not None:
        terminal = f"{path}.filters[{len(chain.filters) - 1}]"
        _check_cluster_references(network_filter, terminal, known_clusters, errors)
    match = _compile_match(chain.filter_chain_match, f"{path}.filter_chain_match", errors)
    tls = None
    if chain.HasField("transport_socket"):
        timeout = DEFAULT_HANDSHAKE_TIMEOUT
        if chain.HasField("transport_socket_connect_timeout"):
            timeout = seconds(chain.transport_socket_connect_timeout)
            if timeout <= 0:
                errors.add(f"{path}.transport_socket_connect_timeout", "must be positive")
        tls = compile_transport_socket(
            chain.transport_socket,
            f"{path}.transport_socket",
            errors,
            server_side=True,
            handshake_timeout=timeout,
        )
    if len(errors.errors) > before or network_filter is None:
        return None
    return FilterChainConfig(chain.name, match, network_filter, tls, rbac)


def _compile_network_filters(
    chain: listener_pb2.FilterChain, path: str, errors: ErrorCollector
) -> tuple[HcmConfig | TcpProxyConfig | None, tuple[RbacConfig, str] | None]:
    """The chain's terminal filter, and an `envoy.filters.network.rbac` before it if any."""
    filters = list(chain.filters)
    terminal_hint = (
        "envoy.filters.network.tcp_proxy or envoy.filters.network.http_connection_manager, "
        "optionally after one envoy.filters.network.rbac"
    )
    if not 1 <= len(filters) <= 2:
        errors.add(f"{path}.filters", f"one terminal network filter is supported: {terminal_hint}")
        return None, None
    rbac = None
    if len(filters) == 2:
        rbac_path = f"{path}.filters[0].typed_config"
        try:
            first = support.unpack_any(filters[0].typed_config, rbac_path)
        except ConfigError as exc:
            errors.extend([exc])
            return None, None
        if not isinstance(first, network_rbac_pb2.RBAC):
            errors.add(f"{path}.filters", f"not supported: {terminal_hint}")
            return None, None
        rbac = compile_network_rbac(first, rbac_path, errors)
    index = len(filters) - 1
    filter_path = f"{path}.filters[{index}].typed_config"
    try:
        typed = support.unpack_any(filters[index].typed_config, filter_path)
    except ConfigError as exc:
        errors.extend([exc])
        return None, rbac
    if isinstance(typed, hcm_pb2.HttpConnectionManager):
        return compile_hcm(typed, filter_path, errors), rbac
    if isinstance(typed, tcp_proxy_pb2.TcpProxy):
        return compile_tcp_proxy(typed, filter_path, errors), rbac
    errors.add(filter_path, f"not supported: {filter_path} (@type {typed.DESCRIPTOR.full_name})")
    return None, rbac


def _cidrs(
    ranges: Sequence[address_pb2.CidrRange], path: str, errors: ErrorCollector
) -> tuple[Network, ...]:
    found = (cidr_range(cidr, f"{path}[{index}]", errors) for index, cidr in enumerate(ranges))
    return tuple(network for network in found if network is not None)


def _compile_match(
    match: listener_components_pb2.FilterChainMatch, path: str, errors: ErrorCollector
) -> ChainMatch:
    names = tuple(name.lower() for name in match.server_names)
    for index, name in enumerate(names):
        if not name or "*" in name[1:] or (name.startswith("*") and not name.startswith("*.")):
            errors.add(
                f"{path}.server_names[{index}]",
                f"{name!r}: a server name, or a wildcard of the form *.example.com",
            )
    protocol = match.transport_protocol
    if protocol not in ("", "tls", "raw_buffer"):
        errors.add(f"{path}.transport_protocol", f"{protocol!r}: one of tls, raw_buffer")
    port = match.destination_port.value if match.HasField("destination_port") else 0
    if not 0 <= port <= 65535:
        errors.add(f"{path}.destination_port", "must be 0-65535")
    return ChainMatch(
        destination_port=port,
        prefix_ranges=_cidrs(match.prefix_ranges, f"{path}.prefix_ranges", errors),
        server_names=names,
        transport_protocol=protocol,
        application_protocols=tuple(match.application_protocols),
        direct_source_prefix_ranges=_cidrs(
            match.direct_source_prefix_ranges, f"{path}.direct_source_prefix_ranges", errors
        ),
        source_type=match.source_type,
        source_prefix_ranges=_cidrs(
            match.source_prefix_ranges, f"{path}.source_prefix_ranges", errors
        ),
        source_ports=tuple(match.source_ports),
    )


def _check_cluster_references(
    network_filter: HcmConfig | TcpProxyConfig,
    filter_path: str,
    clusters: Collection[str],
    errors: ErrorCollector,
) -> None:
    typed_path = f"{filter_path}.typed_config"
    if isinstance(network_filter, HcmConfig):
        for cluster in sorted(network_filter.route_table.cluster_names):
            if cluster not in clusters:
                errors.add(
                    f"{typed_path}.route_config", f"route references unknown cluster {cluster!r}"
                )
    elif network_filter.cluster not in clusters:
        errors.add(f"{typed_path}.cluster", f"unknown cluster {network_filter.cluster!r}")


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
