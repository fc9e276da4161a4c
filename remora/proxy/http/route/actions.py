"""What a matched route does: forward to a cluster, redirect, or answer directly.

Actions are compiled once; per request they only slice strings and, for weighted clusters, draw
one random number. Path rewrites follow Envoy: `prefix_rewrite` swaps the matched prefix (the whole
path for exact and regex routes) and keeps the rest, query included; `regex_rewrite` replaces every
match in the path without its query, then re-appends the query.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from google.protobuf import duration_pb2

from remora.config.errors import ErrorCollector
from remora.proxy.http.route.hash_policy import HashPolicy, compile_hash_policy
from remora.proxy.http.route.headers import HeaderMutation, MutationChain, chain, compile_mutation
from remora.proxy.http.route.re2 import Substitution, compile_substitution

if TYPE_CHECKING:
    from remora.proxy.http.route.table import RouteRequest

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_DIRECT_RESPONSE_BODY = 4096
_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1

_REDIRECT_CODES = {
    rc_pb2.RedirectAction.MOVED_PERMANENTLY: 301,
    rc_pb2.RedirectAction.FOUND: 302,
    rc_pb2.RedirectAction.SEE_OTHER: 303,
    rc_pb2.RedirectAction.TEMPORARY_REDIRECT: 307,
    rc_pb2.RedirectAction.PERMANENT_REDIRECT: 308,
}


def rewrite_path(
    raw: str,
    path_end: int,
    matched_len: int,
    prefix_rewrite: str | None,
    regex_rewrite: Substitution | None,
) -> str:
    """Apply a prefix or regex rewrite to the request-target `raw` (path + query)."""
    if prefix_rewrite is not None:
        return prefix_rewrite + raw[matched_len:]
    if regex_rewrite is not None:
        return regex_rewrite.apply(raw[:path_end]) + raw[path_end:]
    return raw


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """One upstream cluster a route can pick, with the header mutations that apply to it."""

    name: str
    host_rewrite: str | None
    request_headers: MutationChain
    response_headers: MutationChain


@dataclass(frozen=True, slots=True)
class ClusterAction:
    targets: tuple[ClusterTarget, ...]
    # Cumulative weights of `targets` for weighted_clusters; empty for a single cluster.
    ends: tuple[int, ...]
    total_weight: int
    random_header: str | None
    prefix_rewrite: str | None
    regex_rewrite: Substitution | None
    host_rewrite: str | None
    auto_host_rewrite: bool
    timeout: float | None
    hash_policy: HashPolicy | None = None  # read only for RING_HASH and MAGLEV clusters
    # max_stream_duration: the route's own limit on a stream's life, replacing the connection
    # manager's (`stream_duration_set`; 0 there, None here, disables it); and, for gRPC
    # callers, grpc-timeout as the route timeout, capped at `grpc_timeout_max` (0: uncapped;
    # None: the header is not read) less `grpc_timeout_offset`.
    stream_duration: float | None = None
    stream_duration_set: bool = False
    grpc_timeout_max: float | None = None
    grpc_timeout_offset: float = 0.0

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(target.name for target in self.targets)

    def pick(self, request: RouteRequest, rng: random.Random) -> ClusterTarget:
        """Envoy's weighted pick: a 64-bit random value modulo the total weight."""
        if not self.ends:
            return self.targets[0]
        value = -1
        header = self.random_header
        if header is not None:
            for key, item in request.headers:
                if key == header:
                    if item.isdigit() and item.isascii() and int(item) <= _UINT64_MAX:
                        value = int(item)
                    break
        if value < 0:
            value = rng.getrandbits(64)
        return self.targets[bisect_right(self.ends, value % self.total_weight)]


@dataclass(frozen=True, slots=True)
class RedirectAction:
    scheme: str | None
    host: str | None
    port: int  # 0: keep
    path: str | None
    path_has_query: bool
    prefix_rewrite: str | None
    regex_rewrite: Substitution | None
    status: int
    strip_query: bool

    def location(self, request: RouteRequest, path_end: int, matched_len: int) -> str:
        request_scheme = request.scheme
        scheme = self.scheme or request_scheme
        port = f":{self.port}" if self.port else ""
        host = self.host
        if host is None:
            host = _redirect_host(request.authority, scheme, request_scheme, bool(self.port))
        raw = request.path
        if self.path is not None:
            path = self.path
            if not self.path_has_query:
                query = raw.find("?")
                if query >= 0 and not self.strip_query:
                    path += raw[query:]
        else:
            path = rewrite_path(raw, path_end, matched_len, self.prefix_rewrite, self.regex_rewrite)
            if self.strip_query:
                query = path.find("?")
                if query >= 0:
                    path = path[:query]
        return f"{scheme}://{host}{port}{path}"


def _port_start(authority: str) -> int:
    colon = authority.rfind(":")
    if colon < 0 or authority.rfind("]") > colon or not authority[colon + 1 :].isdigit():
        return -1
    return colon


def _redirect_host(authority: str, scheme: str, request_scheme: str, new_port: bool) -> str:
    """Envoy drops the request's port when a new port is set, or when the scheme changes and the
    old port was the old scheme's default (http://h:80 -> https://h)."""
    start = _port_start(authority)
    if start < 0:
        return authority
    port = authority[start:]
    remove = new_port
    if scheme != request_scheme:
        remove = remove or (request_scheme == "https" and port == ":443")
        remove = remove or (request_scheme == "http" and port == ":80")
    return authority[:start] if remove else authority


@dataclass(frozen=True, slots=True)
class DirectResponseAction:
    status: int
    body: bytes


Action = ClusterAction | RedirectAction | DirectResponseAction


@dataclass(frozen=True, slots=True)
class HeaderLevels:
    """The header mutation levels around an action, most specific (route) first."""

    request: tuple[HeaderMutation | None, ...]
    response: tuple[HeaderMutation | None, ...]
    most_specific_wins: bool

    def request_chain(self, innermost: HeaderMutation | None = None) -> MutationChain:
        return chain((innermost, *self.request), self.most_specific_wins)

    def response_chain(self, innermost: HeaderMutation | None = None) -> MutationChain:
        return chain((innermost, *self.response), self.most_specific_wins)


def duration_seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


def _compile_targets(
    action: rc_pb2.RouteAction,
    path: str,
    errors: ErrorCollector,
    levels: HeaderLevels,
) -> tuple[tuple[ClusterTarget, ...], tuple[int, ...], int, str | None] | None:
    which = action.WhichOneof("cluster_specifier")
    if which == "cluster":
        if not action.cluster:
            errors.add(f"{path}.cluster", "cluster name must not be empty")
            return None
        target = ClusterTarget(
            action.cluster, None, levels.request_chain(), levels.response_chain()
        )
        return (target,), (), 1, None
    if which is None:
        errors.add(path, "a route action needs cluster or weighted_clusters")
        return None
    if which != "weighted_clusters":
        errors.add(f"{path}.{which}", f"not supported: {path}.{which}")
        return None
    weighted = action.weighted_clusters
    wpath = f"{path}.weighted_clusters"
    if not weighted.clusters:
        errors.add(f"{wpath}.clusters", "at least one cluster is required")
        return None
    targets: list[ClusterTarget] = []
    ends: list[int] = []
    total = 0
    ok = True
    for i, cluster in enumerate(weighted.clusters):
        cpath = f"{wpath}.clusters[{i}]"
        if cluster.cluster_header:
            errors.add(f"{cpath}.cluster_header", f"not supported: {cpath}.cluster_header")
            ok = False
            continue
        if not cluster.name:
            errors.add(f"{cpath}.name", "cluster name must not be empty")
            ok = False
            continue
        level_request = compile_mutation(
            cluster.request_headers_to_add,
            cluster.request_headers_to_remove,
            cpath,
            "request_headers_to_add",
            "request_headers_to_remove",
            errors,
        )
        level_response = compile_mutation(
            cluster.response_headers_to_add,
            cluster.response_headers_to_remove,
            cpath,
            "response_headers_to_add",
            "response_headers_to_remove",
            errors,
        )
        total += cluster.weight.value
        ends.append(total)
        targets.append(
            ClusterTarget(
                cluster.name,
                cluster.host_rewrite_literal or None,
                levels.request_chain(level_request),
                levels.response_chain(level_response),
            )
        )
    if not ok:
        return None
    if total == 0:
        errors.add(f"{wpath}.clusters", "the sum of cluster weights must be greater than 0")
        return None
    if total > _UINT32_MAX:
        errors.add(f"{wpath}.clusters", f"the sum of cluster weights ({total}) exceeds 2^32-1")
        return None
    if weighted.HasField("total_weight") and weighted.total_weight.value not in (0, total):
        errors.add(
            f"{wpath}.total_weight",
            f"the sum of cluster weights ({total}) must equal total_weight "
            f"({weighted.total_weight.value})",
        )
        return None
    header = weighted.header_name.lower() or None
    return tuple(targets), tuple(ends), total, header


def compile_route_action(
    action: rc_pb2.RouteAction,
    path: str,
    errors: ErrorCollector,
    levels: HeaderLevels,
) -> ClusterAction | None:
    ok = True
    prefix_rewrite: str | None = None
    regex_rewrite: Substitution | None = None
    if action.prefix_rewrite and action.HasField("regex_rewrite"):
        errors.add(
            f"{path}.regex_rewrite", "only one of prefix_rewrite and regex_rewrite may be set"
        )
        ok = False
    elif action.prefix_rewrite:
        prefix_rewrite = action.prefix_rewrite
    elif action.HasField("regex_rewrite"):
        regex_rewrite = compile_substitution(action.regex_rewrite, f"{path}.regex_rewrite", errors)
        ok = regex_rewrite is not None
    timeout: float | None = DEFAULT_TIMEOUT
    if action.HasField("timeout"):
        seconds = duration_seconds(action.timeout)
        if seconds < 0:
            errors.add(f"{path}.timeout", "timeout must not be negative")
            ok = False
        timeout = seconds if seconds > 0 else None
    host_which = action.WhichOneof("host_rewrite_specifier")
    host_rewrite: str | None = None
    auto_host = False
    if host_which == "host_rewrite_literal":
        host_rewrite = action.host_rewrite_literal or None
    elif host_which == "auto_host_rewrite":
        auto_host = action.auto_host_rewrite.value
    elif host_which is not None:
        errors.add(f"{path}.{host_which}", f"not supported: {path}.{host_which}")
        ok = False
    stream_duration: float | None = None
    stream_duration_set = False
    grpc_max: float | None = None
    grpc_offset = 0.0
    if action.HasField("max_stream_duration"):
        limits = action.max_stream_duration
        lpath = f"{path}.max_stream_duration"
        names = ("max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset")
        for name in names:
            if limits.HasField(name) and duration_seconds(getattr(limits, name)) < 0:
                errors.add(f"{lpath}.{name}", "must not be negative")
                ok = False
        if limits.HasField("max_stream_duration"):
            stream_duration_set = True
            stream_duration = duration_seconds(limits.max_stream_duration) or None
        if limits.HasField("grpc_timeout_header_max"):
            grpc_max = duration_seconds(limits.grpc_timeout_header_max)
        if limits.HasField("grpc_timeout_header_offset"):
            grpc_offset = duration_seconds(limits.grpc_timeout_header_offset)
    hash_policy = compile_hash_policy(list(action.hash_policy), f"{path}.hash_policy", errors)
    targets = _compile_targets(action, path, errors, levels)
    if targets is None or not ok:
        return None
    chosen, ends, total, header = targets
    return ClusterAction(
        targets=chosen,
        ends=ends,
        total_weight=total,
        random_header=header,
        prefix_rewrite=prefix_rewrite,
        regex_rewrite=regex_rewrite,
        host_rewrite=host_rewrite,
        auto_host_rewrite=auto_host,
        timeout=timeout,
        hash_policy=hash_policy,
        stream_duration=stream_duration,
        stream_duration_set=stream_duration_set,
        grpc_timeout_max=grpc_max,
        grpc_timeout_offset=grpc_offset,
    )


def compile_redirect(
    redirect: rc_pb2.RedirectAction, path: str, errors: ErrorCollector
) -> RedirectAction | None:
    scheme: str | None = None
    if redirect.WhichOneof("scheme_rewrite_specifier") == "scheme_redirect":
        scheme = redirect.scheme_redirect.lower() or None
    elif redirect.https_redirect:
        scheme = "https"
    host = redirect.host_redirect or None
    if host is not None and redirect.port_redirect:
        start = _port_start(host)
        host = host[:start] if start >= 0 else host
    if redirect.port_redirect > 65535:
        errors.add(f"{path}.port_redirect", "port_redirect must be at most 65535")
        return None
    status = _REDIRECT_CODES.get(redirect.response_code)
    if status is None:
        errors.add(f"{path}.response_code", f"unknown response_code {redirect.response_code}")
        return None
    which = redirect.WhichOneof("path_rewrite_specifier")
    regex_rewrite: Substitution | None = None
    if which == "regex_rewrite":
        regex_rewrite = compile_substitution(
            redirect.regex_rewrite, f"{path}.regex_rewrite", errors
        )
        if regex_rewrite is None:
            return None
    path_redirect = redirect.path_redirect if which == "path_redirect" else None
    return RedirectAction(
        scheme=scheme,
        host=host,
        port=redirect.port_redirect,
        path=path_redirect,
        path_has_query=path_redirect is not None and "?" in path_redirect,
        prefix_rewrite=redirect.prefix_rewrite if which == "prefix_rewrite" else None,
        regex_rewrite=regex_rewrite,
        status=status,
        strip_query=redirect.strip_query,
    )


def compile_direct_response(
    direct: rc_pb2.DirectResponseAction, path: str, errors: ErrorCollector, max_body: int
) -> DirectResponseAction | None:
    if not 200 <= direct.status < 600:
        errors.add(f"{path}.status", f"status must be in [200, 600), got {direct.status}")
        return None
    body = b""
    if direct.HasField("body"):
        which = direct.body.WhichOneof("specifier")
        if which == "inline_string":
            body = direct.body.inline_string.encode()
        elif which == "inline_bytes":
            body = direct.body.inline_bytes
        elif which is not None:
            errors.add(f"{path}.body.{which}", f"not supported: {path}.body.{which}")
            return None
    if len(body) > max_body:
        errors.add(
            f"{path}.body",
            f"body is {len(body)} bytes, over max_direct_response_body_size_bytes ({max_body})",
        )
        return None
    return DirectResponseAction(direct.status, body)
