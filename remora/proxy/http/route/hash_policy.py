"""A route's `hash_policy`: the key RING_HASH and MAGLEV clusters pick a host by.

Each policy hashes one request attribute with xxHash64: a header (every value, sorted, hashed
as one string; `regex_rewrite` first), a cookie's value, the downstream peer's IP, or a query
parameter's first value. As in Envoy, the keys of successive policies combine as
`rotl(key, 1) ^ next`, a policy whose attribute is absent adds nothing, and a `terminal` policy
that produced a key ends the list. No key at all leaves the pick to chance.

Only clusters whose policy hashes run this, so other routes pay nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import xxhash
from envoy.config.route.v3 import route_components_pb2 as rc_pb2

from remora.config import support
from remora.config.errors import ErrorCollector
from remora.proxy.http.route.matchers import parse_query
from remora.proxy.http.route.re2 import Substitution, compile_substitution

if TYPE_CHECKING:
    from remora.proxy.http.route.table import RouteRequest

_HASH_POLICY = "envoy.config.route.v3.RouteAction.HashPolicy"
support.register(
    _HASH_POLICY, {"header", "cookie", "connection_properties", "query_parameter", "terminal"}
)
support.register(f"{_HASH_POLICY}.Header", {"header_name", "regex_rewrite"})
support.register(f"{_HASH_POLICY}.Cookie", {"name"})
support.register(f"{_HASH_POLICY}.ConnectionProperties", {"source_ip"})
support.register(f"{_HASH_POLICY}.QueryParameter", {"name"})

_MASK = (1 << 64) - 1
HEADER, COOKIE, SOURCE_IP, QUERY = range(4)


@dataclass(frozen=True, slots=True)
class HashRule:
    kind: int
    name: str  # header (lowercase), cookie or query parameter name; "" for the source IP
    rewrite: Substitution | None
    terminal: bool

    def value(self, request: RouteRequest, remote_ip: str) -> str | None:
        kind = self.kind
        if kind == HEADER:
            return self._header(request)
        if kind == COOKIE:
            return _cookie(request.headers, self.name)
        if kind == SOURCE_IP:
            return remote_ip or None
        query = request.path.find("?")
        if query < 0:
            return None
        return parse_query(request.path[query + 1 :]).get(self.name)

    def _header(self, request: RouteRequest) -> str | None:
        name = self.name
        if name in ("host", ":authority"):
            values = [request.authority]
        elif name == ":path":
            values = [request.path]
        elif name == ":method":
            values = [request.method]
        else:
            values = [value for key, value in request.headers if key == name]
        if not values:
            return None
        if self.rewrite is not None:
            values = [self.rewrite.apply(value) for value in values]
        return values[0] if len(values) == 1 else "".join(sorted(values))


@dataclass(frozen=True, slots=True)
class HashPolicy:
    rules: tuple[HashRule, ...]

    def key(self, request: RouteRequest, remote_ip: str) -> int | None:
        combined: int | None = None
        for rule in self.rules:
            value = rule.value(request, remote_ip)
            if value is not None:
                digest = xxhash.xxh64_intdigest(value.encode())
                if combined is None:
                    combined = digest
                else:
                    combined = (((combined << 1) | (combined >> 63)) & _MASK) ^ digest
            if rule.terminal and combined is not None:
                break
        return combined


def _cookie(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key != "cookie":
            continue
        for pair in value.split(";"):
            cookie, sep, content = pair.strip().partition("=")
            if sep and cookie == name:
                # RFC 6265 §4.1.1: a value may be quoted; the quotes are not part of it.
                if len(content) >= 2 and content[0] == content[-1] == '"':
                    content = content[1:-1]
                return content
    return None


def compile_hash_policy(
    policies: list[rc_pb2.RouteAction.HashPolicy], path: str, errors: ErrorCollector
) -> HashPolicy | None:
    rules: list[HashRule] = []
    for i, policy in enumerate(policies):
        item = f"{path}[{i}]"
        which = policy.WhichOneof("policy_specifier")
        if which == "header":
            name = policy.header.header_name.lower()
            if not name:
                errors.add(f"{item}.header.header_name", "must not be empty")
                continue
            rewrite = None
            if policy.header.HasField("regex_rewrite"):
                rewrite = compile_substitution(
                    policy.header.regex_rewrite, f"{item}.header.regex_rewrite", errors
                )
                if rewrite is None:
                    continue
            rules.append(HashRule(HEADER, name, rewrite, policy.terminal))
        elif which == "cookie":
            cookie = policy.cookie
            if cookie.HasField("ttl") or cookie.path or cookie.attributes:
                # Those ask the proxy to mint the cookie when it is missing.
                errors.add(
                    f"{item}.cookie",
                    f"not supported: {item}.cookie (ttl, path and attributes: generated "
                    "cookies; a cookie the client sends is hashed with name alone)",
                )
                continue
            if not cookie.name:
                errors.add(f"{item}.cookie.name", "must not be empty")
                continue
            rules.append(HashRule(COOKIE, cookie.name, None, policy.terminal))
        elif which == "connection_properties":
            if policy.connection_properties.source_ip:
                rules.append(HashRule(SOURCE_IP, "", None, policy.terminal))
        elif which == "query_parameter":
            if not policy.query_parameter.name:
                errors.add(f"{item}.query_parameter.name", "must not be empty")
                continue
            rules.append(HashRule(QUERY, policy.query_parameter.name, None, policy.terminal))
        elif which is None:
            errors.add(
                item,
                "a hash policy needs one of header, cookie, connection_properties and "
                "query_parameter",
            )
        else:
            errors.add(f"{item}.{which}", f"not supported: {item}.{which}")
    return HashPolicy(tuple(rules)) if rules else None
