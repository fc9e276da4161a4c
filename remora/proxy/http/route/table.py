"""The compiled route table and the per-request match.

This is the hot path: one dict probe picks the virtual host, then routes are tried in order with
plain string operations on precomputed values. Nothing here touches a protobuf, compiles a regex or
lowercases config; the request path is lowercased at most once, and only if a case-insensitive
route is reached. The query string is parsed only if a route with query matchers is reached.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from remora.proxy.http.route.actions import (
    Action,
    ClusterAction,
    DirectResponseAction,
    RedirectAction,
    rewrite_path,
)
from remora.proxy.http.route.domains import DomainIndex
from remora.proxy.http.route.headers import MutationChain
from remora.proxy.http.route.matchers import HeaderMatch, QueryMatch, is_grpc, parse_query

# Path specifier kinds.
PREFIX, EXACT, REGEX, SEPARATED_PREFIX = range(4)


@dataclass(slots=True)
class RouteRequest:
    method: str
    path: str  # the raw request-target, query included
    authority: str  # Host as sent, port included if any
    headers: list[tuple[str, str]] = field(default_factory=list)  # lowercase, no pseudo-headers
    scheme: str = "http"


class RouteResult:
    """The outcome of routing one request; built per request, so plain slots, no dataclass."""

    __slots__ = (
        "_request_headers",
        "_response_headers",
        "action",
        "authority",
        "body",
        "cluster",
        "location",
        "path",
        "route_name",
        "status",
        "virtual_host_name",
    )

    def __init__(
        self,
        action: Action,
        route_name: str,
        virtual_host_name: str,
        cluster: str,
        path: str,
        authority: str | None,
        status: int,
        location: str,
        body: bytes,
        request_headers: MutationChain,
        response_headers: MutationChain,
    ) -> None:
        self.action = action
        self.route_name = route_name
        self.virtual_host_name = virtual_host_name
        self.cluster = cluster
        self.path = path
        self.authority = authority
        self.status = status
        self.location = location
        self.body = body
        self._request_headers = request_headers
        self._response_headers = response_headers

    @property
    def auto_host_rewrite(self) -> bool:
        action = self.action
        return isinstance(action, ClusterAction) and action.auto_host_rewrite

    @property
    def timeout(self) -> float | None:
        action = self.action
        return action.timeout if isinstance(action, ClusterAction) else None

    def apply_request_headers(
        self, headers: Sequence[tuple[str, str]], context: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """Return a new header list with the route's request mutations applied."""
        return self._request_headers.apply(headers, context)

    def apply_response_headers(
        self, headers: Sequence[tuple[str, str]], context: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """Return a new header list with the route's response mutations applied."""
        return self._response_headers.apply(headers, context)

    def __repr__(self) -> str:
        return (
            f"RouteResult(route={self.route_name!r}, vhost={self.virtual_host_name!r}, "
            f"action={type(self.action).__name__}, cluster={self.cluster!r}, path={self.path!r}, "
            f"status={self.status}, location={self.location!r})"
        )


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    name: str
    virtual_host_name: str
    path_kind: int
    path_value: str  # lowercased when not case_sensitive
    path_regex: re.Pattern[str] | None
    case_sensitive: bool
    headers: tuple[HeaderMatch, ...]
    query: tuple[QueryMatch, ...]
    grpc: bool
    action: Action
    # Chains for redirect and direct_response; cluster targets carry their own.
    request_headers: MutationChain
    response_headers: MutationChain

    def result(self, request: RouteRequest, path_end: int, rng: random.Random) -> RouteResult:
        action = self.action
        raw = request.path
        kind = self.path_kind
        matched = len(self.path_value) if kind in (PREFIX, SEPARATED_PREFIX) else path_end
        if isinstance(action, ClusterAction):
            target = action.pick(request, rng)
            if action.prefix_rewrite is None and action.regex_rewrite is None:
                upstream_path = raw
            else:
                upstream_path = rewrite_path(
                    raw, path_end, matched, action.prefix_rewrite, action.regex_rewrite
                )
            return RouteResult(
                action,
                self.name,
                self.virtual_host_name,
                target.name,
                upstream_path,
                target.host_rewrite or action.host_rewrite,
                0,
                "",
                b"",
                target.request_headers,
                target.response_headers,
            )
        if isinstance(action, RedirectAction):
            return RouteResult(
                action,
                self.name,
                self.virtual_host_name,
                "",
                raw,
                None,
                action.status,
                action.location(request, path_end, matched),
                b"",
                self.request_headers,
                self.response_headers,
            )
        assert isinstance(action, DirectResponseAction)
        return RouteResult(
            action,
            self.name,
            self.virtual_host_name,
            "",
            raw,
            None,
            action.status,
            "",
            action.body,
            self.request_headers,
            self.response_headers,
        )


@dataclass(frozen=True, slots=True)
class VirtualHostEntry:
    name: str
    routes: tuple[CompiledRoute, ...]


def _path_end(raw: str) -> int:
    """Index where the query (or fragment) starts; Envoy matches paths without it."""
    end = raw.find("?")
    if end < 0:
        end = raw.find("#")
        if end < 0:
            return len(raw)
    return end


class RouteTable:
    """An immutable, compiled RouteConfiguration; `route()` is safe to call from any task."""

    __slots__ = ("_ignore_path_parameters", "_rng", "domains", "name", "virtual_hosts")

    def __init__(
        self,
        name: str,
        virtual_hosts: tuple[VirtualHostEntry, ...],
        domains: DomainIndex[VirtualHostEntry],
        ignore_path_parameters: bool,
        rng: random.Random,
    ) -> None:
        self.name = name
        self.virtual_hosts = virtual_hosts
        self.domains = domains
        self._ignore_path_parameters = ignore_path_parameters
        self._rng = rng

    @property
    def cluster_names(self) -> frozenset[str]:
        """Every cluster a route may send to, for the caller's cluster validation."""
        names: set[str] = set()
        for vhost in self.virtual_hosts:
            for route in vhost.routes:
                if isinstance(route.action, ClusterAction):
                    names.update(route.action.cluster_names)
        return frozenset(names)

    def route(self, request: RouteRequest) -> RouteResult | None:
        vhost = self.domains.find(request.authority)
        if vhost is None:
            return None
        raw = request.path
        path_end = _path_end(raw)
        path = raw[:path_end]
        if self._ignore_path_parameters:
            semicolon = path.find(";")
            if semicolon >= 0:
                path = path[:semicolon]
        lowered: str | None = None
        params: dict[str, str] | None = None
        for route in vhost.routes:
            kind = route.path_kind
            if route.case_sensitive:
                subject = path
            else:
                if lowered is None:
                    lowered = path.lower()
                subject = lowered
            if kind == PREFIX:
                if not subject.startswith(route.path_value):
                    continue
            elif kind == EXACT:
                if subject != route.path_value:
                    continue
            elif kind == REGEX:
                assert route.path_regex is not None
                if route.path_regex.fullmatch(path) is None:
                    continue
            else:
                value = route.path_value
                if not subject.startswith(value) or (
                    len(subject) != len(value) and subject[len(value)] != "/"
                ):
                    continue
            if route.headers and not all(match.matches(request) for match in route.headers):
                continue
            if route.query:
                if params is None:
                    query = raw[path_end + 1 :] if raw.startswith("?", path_end) else ""
                    params = parse_query(query.partition("#")[0])
                if not all(match.matches(params) for match in route.query):
                    continue
            if route.grpc and not is_grpc(request):
                continue
            return route.result(request, path_end, self._rng)
        return None
