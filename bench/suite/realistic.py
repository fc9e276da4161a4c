"""The "realistic" config profile: what an Envoy user typically has switched on, as data that each
peer translates into its own config.

- an access log written to a file, in the peer's usual default format;
- a request id generated for every request and sent upstream as `x-request-id`;
- a dozen routes with path regexes and header matchers, tried in order before the catch-all that
  the load hits, each route to its own cluster (backend), so route matching does real work;
- a response header added by the matched route (`x-route: <route name>`).

Every pattern is anchored (`^...$`): Envoy's `safe_regex` must match the whole path or value,
while HAProxy's `path_reg`/`-m reg`, nginx's `~` and Caddy's regexp matchers search, so anchors
give all of them the same meaning. Requests for the load's path (`/1k`) match none of the dozen:
each peer evaluates them (as far as its matcher allows it to skip) and lands on the catch-all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The config a peer is launched with: the suite's minimal one (one route, no log), or this one.
Profile = Literal["minimal", "realistic"]

#: The response header every realistic route adds (the value is the route's name).
ROUTE_HEADER = "x-route"
#: The request id header the peers generate and send upstream.
REQUEST_ID_HEADER = "x-request-id"
#: The realistic upstream echoes the x-request-id it received in this response header, so the
#: readiness check can prove that a generated id reached the upstream.
ECHO_HEADER = "x-upstream-request-id"

HeaderMatch = Literal["exact", "prefix", "regex", "present"]


@dataclass(frozen=True)
class HeaderCond:
    name: str  # lower case; ":authority" means the Host header
    match: HeaderMatch
    value: str = ""


@dataclass(frozen=True)
class Route:
    name: str
    #: Exactly one of the two: a path prefix, or an anchored regex the whole path must match.
    prefix: str | None = None
    path_regex: str | None = None
    header: HeaderCond | None = None


ROUTES: tuple[Route, ...] = (
    Route("users-v2", prefix="/api/v2/users", header=HeaderCond("x-api-version", "exact", "2")),
    Route("orders", path_regex=r"^/api/v[0-9]+/orders/[0-9]+$"),
    Route("order-items", path_regex=r"^/api/v[0-9]+/orders/[0-9]+/items(/[0-9]+)?$"),
    Route("static", path_regex=r"^/static/.+\.(css|js|png|svg|woff2)$"),
    # No literal prefix beyond "/": no index can skip these two, every request runs the regex.
    Route("localized", path_regex=r"^/[a-z]{2}-[a-z]{2}/.*$"),
    Route("scripts", path_regex=r"^/.*\.(php|aspx?|jsp|cgi)$"),
    Route("canary", prefix="/", header=HeaderCond("x-canary", "exact", "always")),
    Route("debug", prefix="/", header=HeaderCond("x-debug-session", "present")),
    Route(
        "admin",
        prefix="/",
        header=HeaderCond(":authority", "regex", r"^admin\.[a-z0-9.-]+(:[0-9]+)?$"),
    ),
    Route(
        "mobile", prefix="/", header=HeaderCond("user-agent", "regex", r"^.*(Android|iPhone).*$")
    ),
    Route("grpc", prefix="/", header=HeaderCond("content-type", "prefix", "application/grpc")),
    Route(
        "tenant",
        path_regex=r"^/t/[a-z0-9-]+/.*$",
        header=HeaderCond("x-tenant", "regex", r"^[a-z][a-z0-9-]*$"),
    ),
)
CATCH_ALL = Route("catch-all", prefix="/")
#: Every route in match order, the catch-all last.
ALL_ROUTES: tuple[Route, ...] = (*ROUTES, CATCH_ALL)
