"""RouteConfiguration proto -> RouteTable.

Every problem is reported to the ErrorCollector with its field path; a broken route or virtual host
is left out and compilation continues, so one pass reports everything and still returns a table.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2

from remora.config.errors import ErrorCollector
from remora.proxy.http.route.actions import (
    DEFAULT_MAX_DIRECT_RESPONSE_BODY,
    Action,
    ClusterAction,
    ClusterTarget,
    DirectResponseAction,
    HeaderLevels,
    RedirectAction,
    compile_direct_response,
    compile_redirect,
    compile_route_action,
)
from remora.proxy.http.route.domains import DomainIndexBuilder
from remora.proxy.http.route.headers import HeaderMutation, compile_mutation
from remora.proxy.http.route.matchers import (
    HeaderMatch,
    QueryMatch,
    compile_header_matcher,
    compile_query_matcher,
)
from remora.proxy.http.route.re2 import Regex, compile_regex_matcher
from remora.proxy.http.route.retry_policy import compile_retry_policy
from remora.proxy.http.route.retry_rules import RetryPolicy
from remora.proxy.http.route.table import (
    EXACT,
    PREFIX,
    REGEX,
    SEPARATED_PREFIX,
    CompiledRoute,
    RouteTable,
    VirtualHostEntry,
)

_SEPARATED_PREFIX = re.compile(r"^[^?#]+[^?#/]$")


def _levels(
    message: route_pb2.RouteConfiguration | rc_pb2.VirtualHost | rc_pb2.Route,
    path: str,
    errors: ErrorCollector,
) -> tuple[HeaderMutation | None, HeaderMutation | None]:
    request = compile_mutation(
        message.request_headers_to_add,
        message.request_headers_to_remove,
        path,
        "request_headers_to_add",
        "request_headers_to_remove",
        errors,
    )
    response = compile_mutation(
        message.response_headers_to_add,
        message.response_headers_to_remove,
        path,
        "response_headers_to_add",
        "response_headers_to_remove",
        errors,
    )
    return request, response


class _Context:
    """What a route needs from its enclosing levels."""

    __slots__ = (
        "attempt_count",
        "buffer_limit",
        "max_body",
        "most_specific_wins",
        "request_outer",
        "response_outer",
        "retry",
    )

    def __init__(
        self,
        request_outer: tuple[HeaderMutation | None, ...],
        response_outer: tuple[HeaderMutation | None, ...],
        most_specific_wins: bool,
        max_body: int,
        retry: RetryPolicy | None = None,
        attempt_count: bool = False,
        buffer_limit: int | None = None,
    ) -> None:
        self.request_outer = request_outer
        self.response_outer = response_outer
        self.most_specific_wins = most_specific_wins
        self.max_body = max_body
        self.retry = retry  # the virtual host's, compiled once
        self.attempt_count = attempt_count
        self.buffer_limit = buffer_limit


def _compile_path(
    match: rc_pb2.RouteMatch, path: str, errors: ErrorCollector
) -> tuple[int, str, Regex | None] | None:
    case_sensitive = match.case_sensitive.value if match.HasField("case_sensitive") else True
    which = match.WhichOneof("path_specifier")
    if which is None:
        errors.add(
            path, "a route match needs one of prefix, path, safe_regex or path_separated_prefix"
        )
        return None
    if which == "safe_regex":
        regex = compile_regex_matcher(match.safe_regex, f"{path}.safe_regex", errors)
        # Envoy ignores case_sensitive for regex routes; the pattern decides (e.g. with (?i)).
        return None if regex is None else (REGEX, "", regex)
    if which == "path_separated_prefix":
        value = match.path_separated_prefix
        if not _SEPARATED_PREFIX.match(value):
            errors.add(
                f"{path}.path_separated_prefix",
                f"{value!r} must not be empty, contain ? or #, or end with /",
            )
            return None
        kind = SEPARATED_PREFIX
    elif which == "prefix":
        kind, value = PREFIX, match.prefix
    elif which == "path":
        kind, value = EXACT, match.path
    else:
        errors.add(f"{path}.{which}", f"not supported: {path}.{which}")
        return None
    if case_sensitive:
        return kind, value, None
    return kind + 1, value.lower(), None


def _compile_route(
    route: rc_pb2.Route, path: str, vhost_name: str, ctx: _Context, errors: ErrorCollector
) -> CompiledRoute | None:
    before = len(errors.errors)
    mpath = f"{path}.match"
    if not route.HasField("match"):
        errors.add(mpath, "a route needs a match")
        spec = None
    else:
        spec = _compile_path(route.match, mpath, errors)
    headers: list[HeaderMatch] = []
    for i, header in enumerate(route.match.headers):
        compiled = compile_header_matcher(header, f"{mpath}.headers[{i}]", errors)
        if compiled is not None:
            headers.append(compiled)
    query: list[QueryMatch] = []
    for i, param in enumerate(route.match.query_parameters):
        compiled_query = compile_query_matcher(param, f"{mpath}.query_parameters[{i}]", errors)
        if compiled_query is not None:
            query.append(compiled_query)
    request_level, response_level = _levels(route, path, errors)
    levels = HeaderLevels(
        (request_level, *ctx.request_outer),
        (response_level, *ctx.response_outer),
        ctx.most_specific_wins,
    )
    which = route.WhichOneof("action")
    action: Action | None = None
    retry = ctx.retry
    if which == "route":
        action = compile_route_action(route.route, f"{path}.route", errors, levels)
        buffer_limit = ctx.buffer_limit
        if route.HasField("per_request_buffer_limit_bytes"):
            buffer_limit = route.per_request_buffer_limit_bytes.value
        if route.route.HasField("retry_policy"):
            # A route's policy replaces the virtual host's whole, as in Envoy.
            retry = compile_retry_policy(
                route.route.retry_policy,
                f"{path}.route.retry_policy",
                errors,
                attempt_count_header=ctx.attempt_count,
                buffer_limit=buffer_limit,
            )
        elif retry is not None and buffer_limit != retry.buffer_limit:
            retry = replace(retry, buffer_limit=buffer_limit)
    elif which == "redirect":
        action = compile_redirect(route.redirect, f"{path}.redirect", errors)
    elif which == "direct_response":
        action = compile_direct_response(
            route.direct_response, f"{path}.direct_response", errors, ctx.max_body
        )
    elif which is None:
        errors.add(path, "a route needs one of route, redirect or direct_response")
    else:
        errors.add(f"{path}.{which}", f"not supported: {path}.{which}")
    if spec is None or action is None or len(errors.errors) != before:
        return None
    kind, value, regex = spec
    status, body, timeout, auto_host = 0, b"", None, False
    if isinstance(action, ClusterAction):
        timeout, auto_host = action.timeout, action.auto_host_rewrite
    elif isinstance(action, RedirectAction):
        status = action.status
    elif isinstance(action, DirectResponseAction):
        status, body = action.status, action.body
    result = CompiledRoute(
        name=route.name,
        virtual_host_name=vhost_name,
        path_kind=kind,
        path_value=value,
        path_regex=regex,
        headers=tuple(headers),
        query=tuple(query),
        grpc=route.match.HasField("grpc"),
        action=action,
        target=ClusterTarget("", None, levels.request_chain(), levels.response_chain()),
        status=status,
        body=body,
        timeout=timeout,
        auto_host_rewrite=auto_host,
        retry_policy=retry if isinstance(action, ClusterAction) else None,
    )
    fast = result.direct_target
    if fast is None:
        return result
    assert isinstance(action, ClusterAction)
    return replace(
        result, fast_target=fast, fast_authority=fast.host_rewrite or action.host_rewrite
    )


def _valid_domain(domain: str) -> bool:
    return bool(domain) and all(ch >= " " and ch != "\x7f" for ch in domain)


def compile_route_configuration(
    config: route_pb2.RouteConfiguration,
    path: str,
    errors: ErrorCollector,
    *,
    rng: random.Random | None = None,
) -> RouteTable:
    """Compile `config` (found at `path`); problems go to `errors`, broken parts are left out.

    `rng` picks weighted clusters; pass a seeded one for reproducible tests.
    """
    config_request, config_response = _levels(config, path, errors)
    max_body = DEFAULT_MAX_DIRECT_RESPONSE_BODY
    if config.HasField("max_direct_response_body_size_bytes"):
        max_body = config.max_direct_response_body_size_bytes.value
    builder: DomainIndexBuilder[VirtualHostEntry] = DomainIndexBuilder()
    vhosts: list[VirtualHostEntry] = []
    owners: dict[str, int] = {}
    for i, vhost in enumerate(config.virtual_hosts):
        vpath = f"{path}.virtual_hosts[{i}]"
        if not vhost.name:
            errors.add(f"{vpath}.name", "a virtual host needs a name")
        if not vhost.domains:
            errors.add(f"{vpath}.domains", "a virtual host needs at least one domain")
        vhost_request, vhost_response = _levels(vhost, vpath, errors)
        buffer_limit = (
            vhost.per_request_buffer_limit_bytes.value
            if vhost.HasField("per_request_buffer_limit_bytes")
            else None
        )
        ctx = _Context(
            (vhost_request, config_request),
            (vhost_response, config_response),
            config.most_specific_header_mutations_wins,
            max_body,
            compile_retry_policy(
                vhost.retry_policy if vhost.HasField("retry_policy") else None,
                f"{vpath}.retry_policy",
                errors,
                attempt_count_header=vhost.include_request_attempt_count,
                buffer_limit=buffer_limit,
            ),
            vhost.include_request_attempt_count,
            buffer_limit,
        )
        routes: list[CompiledRoute] = []
        for j, route in enumerate(vhost.routes):
            compiled = _compile_route(route, f"{vpath}.routes[{j}]", vhost.name, ctx, errors)
            if compiled is not None:
                routes.append(compiled)
        entry = VirtualHostEntry.of(vhost.name, routes)
        vhosts.append(entry)
        for k, domain in enumerate(vhost.domains):
            dpath = f"{vpath}.domains[{k}]"
            if not _valid_domain(domain):
                errors.add(dpath, f"invalid domain {domain!r}")
                continue
            if not builder.add(domain, entry):
                first = owners.get(domain.lower(), i)
                errors.add(
                    dpath,
                    f"duplicate domain {domain!r} (already in virtual_hosts[{first}]); "
                    "a domain must be unique across virtual hosts",
                )
                continue
            owners[domain.lower()] = i
    return RouteTable(
        name=config.name,
        virtual_hosts=tuple(vhosts),
        domains=builder.build(config.ignore_port_in_host_matching),
        ignore_path_parameters=config.ignore_path_parameters_in_path_matching,
        rng=rng if rng is not None else random.Random(),
    )
