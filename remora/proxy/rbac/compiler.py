"""Envoy's `envoy.config.rbac.v3.RBAC` -> `Rules` (config time only)."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from remora.config import support
from remora.config.common import cidr_range
from remora.config.errors import ErrorCollector
from remora.proxy.http.route.matchers import compile_header_matcher, compile_string_matcher
from remora.proxy.rbac.filter import RbacConfig
from remora.proxy.rbac.policy import (
    Policy,
    Rule,
    Rules,
    Subject,
    all_of,
    always,
    any_of,
    authenticated,
    header,
    in_network,
    negate,
    port_in,
    server_name,
    url_path,
)

_RBAC = "envoy.config.rbac.v3"
support.register(f"{_RBAC}.RBAC", {"action", "policies"})
support.register(f"{_RBAC}.Policy", {"permissions", "principals"})
support.register(
    f"{_RBAC}.Permission",
    {
        "and_rules",
        "or_rules",
        "any",
        "header",
        "url_path",
        "destination_ip",
        "destination_port",
        "destination_port_range",
        "not_rule",
        "requested_server_name",
    },
)
support.register(f"{_RBAC}.Permission.Set", {"rules"})
support.register(
    f"{_RBAC}.Principal",
    {
        "and_ids",
        "or_ids",
        "any",
        "authenticated",
        "source_ip",
        "direct_remote_ip",
        "remote_ip",
        "header",
        "url_path",
        "not_id",
    },
)
support.register(f"{_RBAC}.Principal.Set", {"ids"})
support.register(f"{_RBAC}.Principal.Authenticated", {"principal_name"})
support.register("envoy.type.matcher.v3.PathMatcher", {"path"})
support.register("envoy.type.v3.Int32Range", {"start", "end"})


_HTTP_RBAC = "envoy.extensions.filters.http.rbac.v3.RBAC"
support.register(
    _HTTP_RBAC, {"rules", "rules_stat_prefix", "shadow_rules", "shadow_rules_stat_prefix"}
)


def compile_http_rbac(
    filter_config: http_rbac_pb2.RBAC, path: str, errors: ErrorCollector
) -> RbacConfig:
    rules = None
    if filter_config.HasField("rules"):
        rules = compile_rules(filter_config.rules, f"{path}.rules", errors)
    shadow = None
    if filter_config.HasField("shadow_rules"):
        shadow = compile_rules(filter_config.shadow_rules, f"{path}.shadow_rules", errors)
    return RbacConfig(
        rules, shadow, filter_config.rules_stat_prefix, filter_config.shadow_rules_stat_prefix
    )


_NETWORK_RBAC = "envoy.extensions.filters.network.rbac.v3.RBAC"
support.register(
    _NETWORK_RBAC, {"rules", "shadow_rules", "stat_prefix", "shadow_rules_stat_prefix"}
)


def compile_network_rbac(
    filter_config: network_rbac_pb2.RBAC, path: str, errors: ErrorCollector
) -> tuple[RbacConfig, str]:
    """The config and its stats scope (`<stat_prefix>.`; Envoy requires the prefix)."""
    if not filter_config.stat_prefix:
        errors.add(f"{path}.stat_prefix", "the network RBAC filter needs a stat_prefix")
    rules = None
    if filter_config.HasField("rules"):
        rules = compile_rules(filter_config.rules, f"{path}.rules", errors)
    shadow = None
    if filter_config.HasField("shadow_rules"):
        shadow = compile_rules(filter_config.shadow_rules, f"{path}.shadow_rules", errors)
    config = RbacConfig(rules, shadow, "", filter_config.shadow_rules_stat_prefix)
    return config, f"{filter_config.stat_prefix}."


def compile_rules(rules: rbac_pb2.RBAC, path: str, errors: ErrorCollector) -> Rules:
    policies = []
    for name in sorted(rules.policies):
        policy = rules.policies[name]
        ppath = f"{path}.policies[{name!r}]"
        if not policy.permissions:
            errors.add(f"{ppath}.permissions", "a policy needs at least one permission")
        if not policy.principals:
            errors.add(f"{ppath}.principals", "a policy needs at least one principal")
        permission = any_of(
            [
                _permission(p, f"{ppath}.permissions[{i}]", errors)
                for i, p in enumerate(policy.permissions)
            ]
        )
        principal = any_of(
            [
                _principal(p, f"{ppath}.principals[{i}]", errors)
                for i, p in enumerate(policy.principals)
            ]
        )
        policies.append(Policy(name, permission, principal))
    return Rules(rules.action, tuple(policies))


def _never(_: object) -> bool:
    return False


def _request_rule(
    message: rbac_pb2.Permission | rbac_pb2.Principal,
    which: str,
    where: str,
    errors: ErrorCollector,
) -> Rule:
    """`header` and `url_path`, which permissions and principals share."""
    if which == "header":
        matcher = compile_header_matcher(message.header, where, errors)
        return header(matcher) if matcher is not None else _never
    found = compile_string_matcher(message.url_path.path, f"{where}.path", errors)
    return url_path(found) if found is not None else _never


def _network_rule(
    cidr: address_pb2.CidrRange,
    where: str,
    errors: ErrorCollector,
    read: Callable[[Subject], str],
) -> Rule:
    network = cidr_range(cidr, where, errors)
    return in_network(network, read) if network is not None else _never


def _permission(permission: rbac_pb2.Permission, path: str, errors: ErrorCollector) -> Rule:
    which = permission.WhichOneof("rule")
    where = f"{path}.{which}"
    if which == "any":
        return always
    if which in ("and_rules", "or_rules"):
        rules = getattr(permission, which).rules
        parts = [_permission(r, f"{where}.rules[{i}]", errors) for i, r in enumerate(rules)]
        return all_of(parts) if which == "and_rules" else any_of(parts)
    if which == "not_rule":
        return negate(_permission(permission.not_rule, where, errors))
    if which in ("header", "url_path"):
        return _request_rule(permission, which, where, errors)
    if which == "destination_ip":
        return _network_rule(permission.destination_ip, where, errors, lambda s: s.destination_ip)
    if which == "destination_port":
        port = permission.destination_port
        if not 0 < port <= 65535:
            errors.add(where, "must be 1-65535")
        return port_in(port, port + 1)
    if which == "destination_port_range":
        span = permission.destination_port_range
        if not 0 <= span.start < span.end <= 65536:
            errors.add(where, "needs 0 <= start < end <= 65536 (end is exclusive)")
        return port_in(span.start, span.end)
    if which == "requested_server_name":
        found = compile_string_matcher(permission.requested_server_name, where, errors)
        return server_name(found) if found is not None else _never
    errors.add(path, "a permission needs one rule" if which is None else f"not supported: {where}")
    return _never


def _principal(principal: rbac_pb2.Principal, path: str, errors: ErrorCollector) -> Rule:
    which = principal.WhichOneof("identifier")
    where = f"{path}.{which}"
    if which == "any":
        return always
    if which in ("and_ids", "or_ids"):
        ids = getattr(principal, which).ids
        parts = [_principal(p, f"{where}.ids[{i}]", errors) for i, p in enumerate(ids)]
        return all_of(parts) if which == "and_ids" else any_of(parts)
    if which == "not_id":
        return negate(_principal(principal.not_id, where, errors))
    if which == "authenticated":
        if not principal.authenticated.HasField("principal_name"):
            return authenticated(None)
        found = compile_string_matcher(
            principal.authenticated.principal_name, f"{where}.principal_name", errors
        )
        return authenticated(found) if found is not None else _never
    if which in ("source_ip", "direct_remote_ip"):
        # source_ip (deprecated) is the directly connected peer, as direct_remote_ip.
        cidr = getattr(principal, which)
        return _network_rule(cidr, where, errors, lambda s: s.direct_remote_ip)
    if which == "remote_ip":
        return _network_rule(principal.remote_ip, where, errors, lambda s: s.remote_ip)
    if which in ("header", "url_path"):
        return _request_rule(principal, which, where, errors)
    errors.add(
        path, "a principal needs one identifier" if which is None else f"not supported: {where}"
    )
    return _never
