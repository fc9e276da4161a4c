"""The compiled route table and the per-request match.

This is the hot path: one dict probe picks the virtual host, its path index (for hosts with many
routes) narrows the routes to those that can match, and those are tried in order with plain string
operations on precomputed values. Nothing here touches a protobuf, compiles a regex or lowercases
config; the request path is lowercased at most once, the query string is parsed only if a route
with query matchers is reached, and a plain single-cluster route builds its result with no work.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remora.proxy.http.route.actions import (
    Action,
    ClusterAction,
    ClusterTarget,
    RedirectAction,
    rewrite_path,
)
from remora.proxy.http.route.domains import DomainIndex
from remora.proxy.http.route.matchers import HeaderMatch, QueryMatch, is_grpc, parse_query
from remora.proxy.http.route.pathindex import (
    PathIndex,
    build_index,
    regex_literal_prefix,
    usable_prefix,
)
from remora.proxy.http.route.re2 import Regex

if TYPE_CHECKING:
    from remora.proxy.http.route.retry_rules import RetryPolicy

# Path specifier kinds. The case-insensitive variants are the case-sensitive kind + 1, so the
# match loop decides both "how" and "on which spelling of the path" with one integer test.
PREFIX, PREFIX_CI, EXACT, EXACT_CI, SEPARATED_PREFIX, SEPARATED_PREFIX_CI, REGEX = range(7)


class RouteRequest:
    """What routing looks at. A plain class (not a dataclass): one is built per request."""

    __slots__ = ("authority", "headers", "method", "path", "scheme")

    def __init__(
        self,
        method: str,
        path: str,
        authority: str,
        headers: list[tuple[str, str]] | None = None,
        scheme: str = "http",
    ) -> None:
        self.method = method
        self.path = path  # the raw request-target, query included
        self.authority = authority  # Host as sent, port included if any
        self.headers: list[tuple[str, str]] = [] if headers is None else headers  # lowercase
        self.scheme = scheme

    def __repr__(self) -> str:
        return f"RouteRequest({self.method!r}, {self.path!r}, {self.authority!r})"


class RouteResult:
    """The outcome of routing one request.

    Built on every request, so it stores only what differs per request (the picked cluster target
    and the computed path, authority and redirect location) and reads the rest from the compiled
    route through properties.
    """

    __slots__ = ("_route", "_target", "authority", "location", "path")

    def __init__(
        self,
        route: CompiledRoute,
        target: ClusterTarget,
        path: str,
        authority: str | None,
        location: str,
    ) -> None:
        self._route = route
        self._target = target
        self.path = path
        self.authority = authority
        self.location = location

    @property
    def action(self) -> Action:
        return self._route.action

    @property
    def cluster(self) -> str:
        """The picked cluster; empty for redirects and direct responses."""
        return self._target.name

    @property
    def route_name(self) -> str:
        return self._route.name

    @property
    def virtual_host_name(self) -> str:
        return self._route.virtual_host_name

    @property
    def status(self) -> int:
        """The redirect or direct-response status; 0 for cluster routes."""
        return self._route.status

    @property
    def body(self) -> bytes:
        return self._route.body

    @property
    def auto_host_rewrite(self) -> bool:
        return self._route.auto_host_rewrite

    @property
    def plain_response(self) -> bool:
        """Whether the route leaves response headers alone (no mutations at any level)."""
        return not self._target.response_headers.levels

    @property
    def timeout(self) -> float | None:
        """Upstream timeout in seconds (Envoy's 15 s by default); None when disabled."""
        return self._route.timeout

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """The route's own, else its virtual host's (route overrides as a whole, as in Envoy)."""
        return self._route.retry_policy

    def apply_request_headers(
        self, headers: Sequence[tuple[str, str]], context: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """The headers with the route's request mutations applied: a new list, or `headers`
        itself (a list the caller owns) when the route has none."""
        return self._target.request_headers.apply(headers, context)

    def apply_response_headers(
        self, headers: Sequence[tuple[str, str]], context: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """The headers with the route's response mutations applied: a new list, or `headers`
        itself (a list the caller owns) when the route has none."""
        return self._target.response_headers.apply(headers, context)

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
    path_value: str  # lowercased for the _CI kinds
    path_regex: Regex | None
    headers: tuple[HeaderMatch, ...]
    query: tuple[QueryMatch, ...]
    grpc: bool
    action: Action
    # For redirects and direct responses: a nameless target carrying the header chains.
    target: ClusterTarget
    # Precomputed from the action so results need no isinstance tests.
    status: int
    body: bytes
    timeout: float | None
    auto_host_rewrite: bool
    fast_target: ClusterTarget | None = None  # set by the compiler from direct_target
    fast_authority: str | None = None
    retry_policy: RetryPolicy | None = None

    @property
    def has_conditions(self) -> bool:
        return bool(self.headers or self.query or self.grpc)

    @property
    def direct_target(self) -> ClusterTarget | None:
        """The target of a single-cluster route without path rewrites: no per-request work."""
        action = self.action
        if (
            type(action) is ClusterAction
            and not action.ends
            and action.prefix_rewrite is None
            and action.regex_rewrite is None
        ):
            return action.targets[0]
        return None

    def result(self, request: RouteRequest, path_end: int, rng: random.Random) -> RouteResult:
        target = self.fast_target
        if target is not None:
            return RouteResult(self, target, request.path, self.fast_authority, "")
        action = self.action
        raw = request.path
        kind = self.path_kind
        matched = path_end if kind in (EXACT, EXACT_CI, REGEX) else len(self.path_value)
        if type(action) is ClusterAction:
            target = action.targets[0] if not action.ends else action.pick(request, rng)
            if action.prefix_rewrite is not None or action.regex_rewrite is not None:
                raw = rewrite_path(
                    raw, path_end, matched, action.prefix_rewrite, action.regex_rewrite
                )
            return RouteResult(self, target, raw, target.host_rewrite or action.host_rewrite, "")
        if type(action) is RedirectAction:
            location = action.location(request, path_end, matched)
            return RouteResult(self, self.target, raw, None, location)
        return RouteResult(self, self.target, raw, None, "")


# (path kind, path value, has header/query/grpc conditions, route): tuple unpacking in the match
# loop is cheaper than four attribute reads.
PlanEntry = tuple[int, str, bool, CompiledRoute]


def _required_prefix(route: CompiledRoute) -> str:
    if route.path_kind == REGEX:
        assert route.path_regex is not None
        return usable_prefix(regex_literal_prefix(route.path_regex.pattern))
    return usable_prefix(route.path_value)


@dataclass(frozen=True, slots=True)
class VirtualHostEntry:
    name: str
    routes: tuple[CompiledRoute, ...]
    plan: tuple[PlanEntry, ...]
    index: PathIndex[PlanEntry] | None

    @classmethod
    def of(cls, name: str, routes: Sequence[CompiledRoute]) -> VirtualHostEntry:
        plan = tuple((r.path_kind, r.path_value, r.has_conditions, r) for r in routes)
        index = build_index([(_required_prefix(entry[3]), entry) for entry in plan])
        return cls(name, tuple(routes), plan, index)


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
        params: dict[str, str] | None = None
        index = vhost.index
        if index is None:
            lowered = ""
            plan = vhost.plan
        else:
            lowered = path.lower()
            plan = index.candidates(lowered)
        for kind, value, conditional, route in plan:
            if kind & 1:
                if not lowered:
                    lowered = path.lower()
                subject = lowered
            else:
                subject = path
            if kind < EXACT:
                if not subject.startswith(value):
                    continue
            elif kind < SEPARATED_PREFIX:
                if subject != value:
                    continue
            elif kind < REGEX:
                if not subject.startswith(value) or (
                    len(subject) != len(value) and subject[len(value)] != "/"
                ):
                    continue
            else:
                assert route.path_regex is not None
                if not route.path_regex.fullmatch(path):
                    continue
            if conditional:
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
