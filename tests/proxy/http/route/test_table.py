from __future__ import annotations

import pytest

from remora.proxy.http.route import ClusterAction, RouteRequest
from tests.proxy.http.route.util import build, cluster_route, request, route_name, routes


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        ({"prefix": "/api"}, "/api", True),
        ({"prefix": "/api"}, "/apiary", True),
        ({"prefix": "/api"}, "/API", False),
        ({"prefix": "/api", "case_sensitive": False}, "/API/x", True),
        ({"prefix": "/API", "case_sensitive": False}, "/api/x", True),
        ({"prefix": "/api/"}, "/api", False),
        ({"prefix": "/a?b"}, "/a?b", False),  # the query is not part of the matched path
        ({"path": "/exact"}, "/exact", True),
        ({"path": "/exact"}, "/exact?q=1", True),
        ({"path": "/exact"}, "/exact#frag", True),
        ({"path": "/exact"}, "/exact/", False),
        ({"path": "/Exact", "case_sensitive": False}, "/eXACT", True),
        ({"path": "/Exact", "case_sensitive": True}, "/exact", False),
        ({"safe_regex": {"regex": "/v[0-9]+/.*"}}, "/v12/users?id=3", True),
        ({"safe_regex": {"regex": "/v[0-9]+"}}, "/v12/users", False),  # full match only
        ({"safe_regex": {"regex": "/V1"}, "case_sensitive": False}, "/v1", False),
        ({"safe_regex": {"regex": "(?i)/V1"}}, "/v1", True),
        ({"path_separated_prefix": "/api/dev"}, "/api/dev", True),
        ({"path_separated_prefix": "/api/dev"}, "/api/dev/", True),
        ({"path_separated_prefix": "/api/dev"}, "/api/dev/v1", True),
        ({"path_separated_prefix": "/api/dev"}, "/api/dev?param=true", True),
        ({"path_separated_prefix": "/api/dev"}, "/api/developer", False),
        ({"path_separated_prefix": "/Api", "case_sensitive": False}, "/aPI/x", True),
    ],
)
def test_path_specifiers(match: dict[str, object], path: str, expected: bool) -> None:
    table = routes(cluster_route("hit", match))
    assert (route_name(table, request(path)) == "hit") is expected


def test_first_matching_route_wins() -> None:
    table = routes(
        cluster_route("specific", {"prefix": "/api/v2"}),
        cluster_route("general", {"prefix": "/api"}),
        cluster_route("shadowed", {"prefix": "/api/v3"}),
        cluster_route("root", {"prefix": "/"}),
    )
    assert route_name(table, request("/api/v2/x")) == "specific"
    assert route_name(table, request("/api/v3/x")) == "general"
    assert route_name(table, request("/other")) == "root"


def test_no_route_and_no_vhost_give_none() -> None:
    table = routes(cluster_route("only", {"path": "/x"}), domains=["example.com"])
    assert table.route(request("/y")) is None
    assert table.route(request("/x", authority="elsewhere.com")) is None
    assert route_name(table, request("/x")) == "only"


def test_ignore_path_parameters_in_path_matching() -> None:
    plain = routes(cluster_route("hit", {"path": "/a/b"}))
    assert route_name(plain, request("/a/b;v=1?q")) is None
    stripped = routes(
        cluster_route("hit", {"path": "/a/b"}), ignore_path_parameters_in_path_matching=True
    )
    assert route_name(stripped, request("/a/b;v=1?q")) == "hit"


def test_cluster_result_fields() -> None:
    table = routes(
        {
            "name": "r",
            "match": {"prefix": "/"},
            "route": {"cluster": "backend", "timeout": "2.5s", "auto_host_rewrite": True},
        },
        cluster_route("never", {"prefix": "/"}),
    )
    result = table.route(request("/a/b?x=1", authority="example.com:8080"))
    assert result is not None
    assert isinstance(result.action, ClusterAction)
    assert (result.cluster, result.path, result.authority) == ("backend", "/a/b?x=1", None)
    assert result.auto_host_rewrite is True
    assert result.timeout == 2.5
    assert (result.route_name, result.virtual_host_name) == ("r", "vh")
    assert table.cluster_names == frozenset({"backend", "never"})


@pytest.mark.parametrize(("timeout", "expected"), [(None, 15.0), ("0s", None), ("0.250s", 0.25)])
def test_timeout(timeout: str | None, expected: float | None) -> None:
    action: dict[str, object] = {"cluster": "c"}
    if timeout is not None:
        action["timeout"] = timeout
    table = routes({"match": {"prefix": "/"}, "route": action})
    result = table.route(request())
    assert result is not None
    assert result.timeout == expected


def test_route_table_is_shared_safely_between_requests() -> None:
    """Routing keeps no per-request state in the table: interleaved requests do not interfere."""
    table = build(
        {
            "virtual_hosts": [
                {
                    "name": "vh",
                    "domains": ["*"],
                    "routes": [
                        {
                            "name": "ci",
                            "match": {"prefix": "/CI", "case_sensitive": False},
                            "route": {"cluster": "ci"},
                        },
                        {
                            "name": "q",
                            "match": {
                                "prefix": "/",
                                "query_parameters": [{"name": "k", "present_match": True}],
                            },
                            "route": {"cluster": "q"},
                        },
                    ],
                }
            ]
        }
    )
    requests = [RouteRequest("GET", p, "h", [], "http") for p in ("/ci/x", "/z?k", "/z", "/CI")]
    assert [route_name(table, r) for r in requests * 3] == ["ci", "q", None, "ci"] * 3
