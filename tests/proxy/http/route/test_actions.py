from __future__ import annotations

import base64
import random
from collections import Counter
from typing import Any

import pytest

from remora.proxy.http.route import ClusterAction, DirectResponseAction, RedirectAction
from tests.proxy.http.route.util import build, errors_of, must_route, request, routes


def upstream_path(match: dict[str, Any], action: dict[str, Any], path: str) -> str:
    table = routes({"match": match, "route": {"cluster": "c", **action}})
    return must_route(table, request(path)).path


@pytest.mark.parametrize(
    ("match", "rewrite", "path", "expected"),
    [
        ({"prefix": "/prefix/"}, "/", "/prefix/etc", "/etc"),
        ({"prefix": "/prefix"}, "/", "/prefix", "/"),
        ({"prefix": "/prefix"}, "/", "/prefix/etc", "//etc"),
        ({"prefix": "/prefix"}, "/new", "/prefix?x=1&y", "/new?x=1&y"),
        ({"prefix": "/api", "case_sensitive": False}, "/v2", "/API/x", "/v2/x"),
        ({"path": "/old"}, "/new/path", "/old?q=1", "/new/path?q=1"),
        ({"safe_regex": {"regex": "/v[0-9]/.*"}}, "/x", "/v1/a/b?z", "/x?z"),
        ({"path_separated_prefix": "/api"}, "/svc", "/api/users?id=1", "/svc/users?id=1"),
    ],
)
def test_prefix_rewrite(match: dict[str, Any], rewrite: str, path: str, expected: str) -> None:
    assert upstream_path(match, {"prefix_rewrite": rewrite}, path) == expected


@pytest.mark.parametrize(
    ("pattern", "substitution", "path", "expected"),
    [
        (
            r"^/service/([^/]+)(/.*)$",
            r"\2/instance/\1",
            "/service/foo/v1/api",
            "/v1/api/instance/foo",
        ),
        ("one", "two", "/xxx/one/yyy/one/zzz", "/xxx/two/yyy/two/zzz"),
        (r"^(.*?)one(.*)$", r"\1two\2", "/xxx/one/yyy/one/zzz", "/xxx/two/yyy/one/zzz"),
        ("(?i)/xxx/", "/yyy/", "/aaa/XxX/bbb", "/aaa/yyy/bbb"),
        ("one", "two", "/one?one=one", "/two?one=one"),  # the query is left alone
        ("^/(.*)$", r"/\0", "/a", "//a"),
    ],
)
def test_regex_rewrite(pattern: str, substitution: str, path: str, expected: str) -> None:
    rewrite = {"pattern": {"google_re2": {}, "regex": pattern}, "substitution": substitution}
    assert upstream_path({"prefix": "/"}, {"regex_rewrite": rewrite}, path) == expected


def test_host_rewrite_literal() -> None:
    table = routes(
        {"match": {"prefix": "/"}, "route": {"cluster": "c", "host_rewrite_literal": "up"}}
    )
    result = must_route(table, request(authority="down:80"))
    assert result.authority == "up"
    assert result.auto_host_rewrite is False


def redirect_location(redirect: dict[str, Any], path: str = "/p?q=1", **kw: Any) -> tuple[int, str]:
    table = routes(
        {"match": {"prefix": "/"}, "redirect": redirect},
        {"match": {"prefix": "/"}, "route": {"cluster": "unused"}},
    )
    result = must_route(table, request(path, **kw))
    assert isinstance(result.action, RedirectAction)
    assert result.timeout is None
    return result.status, result.location


@pytest.mark.parametrize(
    ("redirect", "kw", "expected"),
    [
        ({"https_redirect": True}, {"authority": "h:80"}, "https://h/p?q=1"),
        ({"https_redirect": True}, {"authority": "h:8080"}, "https://h:8080/p?q=1"),
        (
            {"https_redirect": True},
            {"authority": "h:443", "scheme": "https"},
            "https://h:443/p?q=1",
        ),
        ({"https_redirect": True}, {"authority": "[::1]:80"}, "https://[::1]/p?q=1"),
        ({"scheme_redirect": "HTTP"}, {"authority": "h:443", "scheme": "https"}, "http://h/p?q=1"),
        ({"host_redirect": "new.example"}, {"authority": "h:80"}, "http://new.example/p?q=1"),
        ({"port_redirect": 8443}, {"authority": "h:80"}, "http://h:8443/p?q=1"),
        ({"port_redirect": 8443}, {"authority": "h"}, "http://h:8443/p?q=1"),
        ({"host_redirect": "n:9", "port_redirect": 10}, {}, "http://n:10/p?q=1"),
        ({"path_redirect": "/new"}, {}, "http://example.com/new?q=1"),
        ({"path_redirect": "/new", "strip_query": True}, {}, "http://example.com/new"),
        ({"path_redirect": "/new?f=1", "strip_query": True}, {}, "http://example.com/new?f=1"),
        ({"path_redirect": "/new?f=1"}, {}, "http://example.com/new?f=1"),
        ({"strip_query": True}, {}, "http://example.com/p"),
        ({"prefix_rewrite": "/n/"}, {}, "http://example.com/n/p?q=1"),
        ({"prefix_rewrite": "/n/", "strip_query": True}, {}, "http://example.com/n/p"),
        (
            {"regex_rewrite": {"pattern": {"regex": "p"}, "substitution": "z"}},
            {},
            "http://example.com/z?q=1",
        ),
    ],
)
def test_redirect_location(redirect: dict[str, Any], kw: dict[str, Any], expected: str) -> None:
    assert redirect_location(redirect, **kw) == (301, expected)


def test_redirect_prefix_rewrite_swaps_the_matched_prefix() -> None:
    table = routes({"match": {"prefix": "/old/"}, "redirect": {"prefix_rewrite": "/new/"}})
    assert must_route(table, request("/old/a/b?x")).location == "http://example.com/new/a/b?x"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("MOVED_PERMANENTLY", 301),
        ("FOUND", 302),
        ("SEE_OTHER", 303),
        ("TEMPORARY_REDIRECT", 307),
        ("PERMANENT_REDIRECT", 308),
    ],
)
def test_redirect_response_codes(code: str, status: int) -> None:
    assert redirect_location({"response_code": code, "path_redirect": "/x"})[0] == status


def test_direct_response() -> None:
    table = routes(
        {
            "match": {"path": "/s"},
            "direct_response": {"status": 503, "body": {"inline_string": "down"}},
        },
        {
            "match": {"path": "/b"},
            "direct_response": {
                "status": 200,
                "body": {"inline_bytes": base64.b64encode(b"\x00\xff").decode()},
            },
        },
        {"match": {"path": "/e"}, "direct_response": {"status": 204}},
    )
    for path, status, body in (("/s", 503, b"down"), ("/b", 200, b"\x00\xff"), ("/e", 204, b"")):
        result = must_route(table, request(path))
        assert isinstance(result.action, DirectResponseAction)
        assert (result.status, result.body, result.cluster) == (status, body, "")


def test_direct_response_errors() -> None:
    def direct(response: dict[str, Any], **extra: Any) -> list[tuple[str, str]]:
        vhost = {
            "name": "v",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": response}],
        }
        return errors_of({"virtual_hosts": [vhost], **extra})

    at = "route_config.virtual_hosts[0].routes[0].direct_response"
    assert direct({"status": 100}) == [(f"{at}.status", "status must be in [200, 600), got 100")]
    assert direct({"status": 200, "body": {"filename": "/etc/hosts"}}) == [
        (f"{at}.body.filename", f"not supported: {at}.body.filename")
    ]
    assert direct(
        {"status": 200, "body": {"inline_string": "12345"}}, max_direct_response_body_size_bytes=4
    ) == [(f"{at}.body", "body is 5 bytes, over max_direct_response_body_size_bytes (4)")]
    assert direct({"status": 200, "body": {"inline_string": "x" * 4097}})[0][0] == f"{at}.body"


def weighted_table(clusters: list[dict[str, Any]], seed: int = 1234, **extra: Any) -> Any:
    vhost = {
        "name": "v",
        "domains": ["*"],
        "routes": [
            {
                "match": {"prefix": "/"},
                "route": {"weighted_clusters": {"clusters": clusters, **extra}},
            }
        ],
    }
    return build({"virtual_hosts": [vhost]}, rng=random.Random(seed))


def test_weighted_distribution() -> None:
    table = weighted_table(
        [
            {"name": "a", "weight": 10},
            {"name": "never", "weight": 0},
            {"name": "b", "weight": 30},
            {"name": "c", "weight": 60},
        ]
    )
    rounds = 20000
    counts = Counter(must_route(table, request()).cluster for _ in range(rounds))
    assert set(counts) == {"a", "b", "c"}
    for name, weight in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        assert abs(counts[name] / rounds - weight) < 0.02, counts


def test_weights_need_not_sum_to_100() -> None:
    table = weighted_table([{"name": "a", "weight": 1}, {"name": "b", "weight": 3}])
    counts = Counter(must_route(table, request()).cluster for _ in range(8000))
    assert abs(counts["b"] / 8000 - 0.75) < 0.03


def test_weighted_random_value_from_header() -> None:
    table = weighted_table(
        [{"name": "a", "weight": 10}, {"name": "b", "weight": 30}, {"name": "c", "weight": 60}],
        header_name="X-Random",
    )

    def pick(value: str) -> str:
        return must_route(table, request(headers=[("x-random", value)])).cluster

    assert [pick(v) for v in ("5", "10", "39", "40", "99", "150", "18446744073709551615")] == [
        "a",
        "b",
        "b",
        "c",
        "c",
        "c",
        "b",  # (2^64-1) % 100 == 15
    ]
    # A value that is not an unsigned 64-bit number falls back to the internal random source.
    assert {pick("-1") for _ in range(200)} == {"a", "b", "c"}


def test_weighted_cluster_host_rewrite_overrides_route() -> None:
    table = build(
        {
            "virtual_hosts": [
                {
                    "name": "v",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {
                                "host_rewrite_literal": "route-host",
                                "weighted_clusters": {
                                    "clusters": [
                                        {
                                            "name": "a",
                                            "weight": 1,
                                            "host_rewrite_literal": "a-host",
                                        },
                                        {"name": "b", "weight": 1},
                                    ]
                                },
                            },
                        }
                    ],
                }
            ]
        },
        rng=random.Random(7),
    )
    seen = {}
    for _ in range(100):
        result = must_route(table, request())
        seen[result.cluster] = result.authority
    assert seen == {"a": "a-host", "b": "route-host"}
    result = must_route(table, request())
    assert isinstance(result.action, ClusterAction)
    assert result.action.cluster_names == ("a", "b")


def test_weight_errors() -> None:
    def weighted(spec: dict[str, Any]) -> list[tuple[str, str]]:
        vhost = {
            "name": "v",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"weighted_clusters": spec}}],
        }
        return errors_of({"virtual_hosts": [vhost]})

    at = "route_config.virtual_hosts[0].routes[0].route.weighted_clusters"
    assert weighted({"clusters": [{"name": "a", "weight": 0}]}) == [
        (f"{at}.clusters", "the sum of cluster weights must be greater than 0")
    ]
    assert weighted({"clusters": [{"name": "a", "weight": 30}], "total_weight": 100}) == [
        (f"{at}.total_weight", "the sum of cluster weights (30) must equal total_weight (100)")
    ]
    assert weighted({"clusters": [{"name": "", "weight": 1}]}) == [
        (f"{at}.clusters[0].name", "cluster name must not be empty")
    ]
    assert weighted({"clusters": []}) == [(f"{at}.clusters", "at least one cluster is required")]
    big = 2**32 - 1
    assert weighted({"clusters": [{"name": "a", "weight": big}, {"name": "b", "weight": 1}]}) == [
        (f"{at}.clusters", f"the sum of cluster weights ({big + 1}) exceeds 2^32-1")
    ]
    assert weighted({"clusters": [{"name": "a", "weight": 1}], "total_weight": 1}) == []
