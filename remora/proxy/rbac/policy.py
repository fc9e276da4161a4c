"""Envoy's RBAC policies, compiled to small matchers and evaluated sans-IO.

A policy matches when any of its permissions and any of its principals match. `ALLOW` admits
what some policy matches and refuses the rest; `DENY` refuses what some policy matches; `LOG`
admits everything. Shadow rules are evaluated the same way, for their stats only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from remora.proxy.http.route.matchers import HeaderMatch, StringMatch
from remora.proxy.http.route.table import RouteRequest
from remora.proxy.tls.facts import TlsFacts

ALLOW, DENY, LOG = 0, 1, 2
ACTIONS = ("ALLOW", "DENY", "LOG")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Subject:
    """What the rules look at: a request (the HTTP filter) or a connection (the network
    filter, which has no request: header and path rules never match there)."""

    __slots__ = (
        "destination_ip",
        "destination_port",
        "direct_remote_ip",
        "remote_ip",
        "request",
        "tls",
    )

    def __init__(
        self,
        destination_ip: str,
        destination_port: int,
        direct_remote_ip: str,
        remote_ip: str,
        tls: TlsFacts | None,
        request: RouteRequest | None = None,
    ) -> None:
        self.destination_ip = destination_ip
        self.destination_port = destination_port
        self.direct_remote_ip = direct_remote_ip
        self.remote_ip = remote_ip  # after x-forwarded-for trust, for the HTTP filter
        self.tls = tls
        self.request = request


Rule = Callable[[Subject], bool]


def any_of(rules: Sequence[Rule]) -> Rule:
    found = tuple(rules)
    return lambda s: any(rule(s) for rule in found)


def all_of(rules: Sequence[Rule]) -> Rule:
    found = tuple(rules)
    return lambda s: all(rule(s) for rule in found)


def negate(rule: Rule) -> Rule:
    return lambda s: not rule(s)


def always(_: Subject) -> bool:
    return True


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def in_network(network: Network, read: Callable[[Subject], str]) -> Rule:
    def match(subject: Subject) -> bool:
        ip = _ip(read(subject))
        return ip is not None and ip.version == network.version and ip in network

    return match


def port_in(low: int, high: int) -> Rule:
    """`destination_port` is [port, port]; `destination_port_range` is [start, end)."""
    return lambda s: low <= s.destination_port < high


def authenticated(matcher: StringMatch | None) -> Rule:
    """Envoy's `AuthenticatedMatcher`: without a `principal_name`, any TLS connection (with or
    without a client certificate); with one, a client certificate any of whose URI SANs, DNS
    SANs or subject matches."""

    def match(subject: Subject) -> bool:
        tls = subject.tls
        if tls is None:
            return False
        if matcher is None:
            return True
        peer = tls.peer
        if peer is None:
            return False
        return (
            any(matcher.matches(uri) for uri in peer.uri_sans)
            or any(matcher.matches(name) for name in peer.dns_sans)
            or matcher.matches(peer.subject)
        )

    return match


def server_name(matcher: StringMatch) -> Rule:
    def match(subject: Subject) -> bool:
        tls = subject.tls
        return matcher.matches(tls.server_name or "") if tls is not None else False

    return match


def header(matcher: HeaderMatch) -> Rule:
    def match(subject: Subject) -> bool:
        return subject.request is not None and matcher.matches(subject.request)

    return match


def url_path(matcher: StringMatch) -> Rule:
    def match(subject: Subject) -> bool:
        request = subject.request
        if request is None:
            return False
        path = request.path
        end = min((i for i in (path.find("?"), path.find("#")) if i >= 0), default=len(path))
        return matcher.matches(path[:end])  # without query and fragment, as Envoy

    return match


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    permission: Rule
    principal: Rule


@dataclass(frozen=True, slots=True)
class Rules:
    action: int
    policies: tuple[Policy, ...]

    def decide(self, subject: Subject) -> tuple[bool, str | None]:
        """(allowed, the first policy that matched, or None). Policies are tried in name
        order, so the one named in logs does not depend on the config's map order."""
        matched = None
        for policy in self.policies:
            if policy.permission(subject) and policy.principal(subject):
                matched = policy.name
                break
        if self.action == ALLOW:
            return matched is not None, matched
        if self.action == DENY:
            return matched is None, matched
        return True, matched
