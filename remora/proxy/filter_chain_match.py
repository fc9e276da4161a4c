"""Which filter chain a new connection goes to: Envoy's `FilterChainMatch`, sans-IO.

Envoy narrows the chains criterion by criterion, in a fixed order: destination port,
destination IP, server name (SNI), transport protocol, application protocols (ALPN), directly
connected source IP, source type, source IP, source port. At each step the chains that name
the connection's value most specifically stay (an exact server name over a wildcard, a longer
CIDR prefix over a shorter); only if none names it do the chains that leave the criterion empty
stay. There is no backtracking: a connection that passes the SNI step on a specific chain and
then fails its ALPN is not offered the wildcard chains again, and falls to the default chain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# FilterChainMatch.ConnectionSourceType
SOURCE_ANY, SOURCE_LOCAL, SOURCE_EXTERNAL = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ChainMatch:
    destination_port: int = 0  # 0: any
    prefix_ranges: tuple[Network, ...] = ()
    server_names: tuple[str, ...] = ()  # lower-case; `*.example.com` wildcards
    transport_protocol: str = ""  # "tls", "raw_buffer", or "" for any
    application_protocols: tuple[str, ...] = ()
    direct_source_prefix_ranges: tuple[Network, ...] = ()
    source_type: int = SOURCE_ANY
    source_prefix_ranges: tuple[Network, ...] = ()
    source_ports: tuple[int, ...] = ()

    @property
    def needs_client_hello(self) -> bool:
        """Whether only a listener filter that reads the ClientHello can tell this chain."""
        return bool(
            self.server_names or self.application_protocols or self.transport_protocol == "tls"
        )


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    destination_ip: str
    destination_port: int
    source_ip: str
    source_port: int
    server_name: str = ""  # from the ClientHello's SNI, lower-case
    transport_protocol: str = "raw_buffer"  # "tls" once an inspector saw a ClientHello
    application_protocols: tuple[str, ...] = ()


def _prefix_score(ranges: tuple[Network, ...], address: str) -> int:
    """1 + the longest prefix containing `address`, 0 for no ranges, -1 for no match."""
    if not ranges:
        return 0
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return -1
    best = -1
    for network in ranges:
        if ip.version == network.version and ip in network:
            best = max(best, network.prefixlen + 1)
    return best


def _server_name_score(names: tuple[str, ...], server_name: str) -> int:
    """Exact beats any wildcard; a longer wildcard suffix beats a shorter one."""
    if not names:
        return 0
    if not server_name:
        return -1
    best = -1
    for name in names:
        if name == server_name:
            return 10_000
        if name.startswith("*.") and server_name.endswith(name[1:]) and server_name != name[2:]:
            best = max(best, len(name))
    return best


def _application_score(protocols: tuple[str, ...], offered: tuple[str, ...]) -> int:
    if not protocols:
        return 0
    return 1 if any(protocol in protocols for protocol in offered) else -1


def _source_type_score(source_type: int, facts: ConnectionFacts) -> int:
    if source_type == SOURCE_ANY:
        return 0
    local = facts.source_ip == facts.destination_ip
    if not local:
        try:
            local = ipaddress.ip_address(facts.source_ip).is_loopback
        except ValueError:
            local = False
    return 1 if local == (source_type == SOURCE_LOCAL) else -1


def _scores(match: ChainMatch, facts: ConnectionFacts) -> tuple[int, ...]:
    return (
        0
        if not match.destination_port
        else (1 if match.destination_port == facts.destination_port else -1),
        _prefix_score(match.prefix_ranges, facts.destination_ip),
        _server_name_score(match.server_names, facts.server_name),
        0
        if not match.transport_protocol
        else (1 if match.transport_protocol == facts.transport_protocol else -1),
        _application_score(match.application_protocols, facts.application_protocols),
        # The directly connected source is the peer itself here (no PROXY protocol).
        _prefix_score(match.direct_source_prefix_ranges, facts.source_ip),
        _source_type_score(match.source_type, facts),
        _prefix_score(match.source_prefix_ranges, facts.source_ip),
        0 if not match.source_ports else (1 if facts.source_port in match.source_ports else -1),
    )


def select_chain(matches: Sequence[ChainMatch], facts: ConnectionFacts) -> int | None:
    """The index of the chain for `facts`, or None (the default chain's turn, if any)."""
    candidates = [(index, _scores(match, facts)) for index, match in enumerate(matches)]
    for step in range(9):
        best = max((scores[step] for _, scores in candidates), default=-1)
        if best < 0:
            return None
        candidates = [(i, scores) for i, scores in candidates if scores[step] == best]
    return candidates[0][0] if candidates else None
