from __future__ import annotations

from typing import Any

import pytest

from remora.proxy.http.route.matchers import parse_query
from tests.proxy.http.route.util import cluster_route, request, route_name, routes


def header_table(*matchers: dict[str, Any]) -> Any:
    return routes(cluster_route("hit", {"prefix": "/", "headers": list(matchers)}))


def hits(table: Any, headers: list[tuple[str, str]], **kw: Any) -> bool:
    return route_name(table, request(headers=headers, **kw)) == "hit"


@pytest.mark.parametrize(
    ("string_match", "value", "expected"),
    [
        ({"exact": "abc"}, "abc", True),
        ({"exact": "abc"}, "ABC", False),
        ({"exact": "abc", "ignore_case": True}, "AbC", True),
        ({"prefix": "ab"}, "abz", True),
        ({"prefix": "ab"}, "zab", False),
        ({"prefix": "AB", "ignore_case": True}, "abz", True),
        ({"suffix": "yz"}, "xyz", True),
        ({"suffix": "yz"}, "yzx", False),
        ({"contains": "mid"}, "amidst", True),
        ({"contains": "MID", "ignore_case": True}, "aMiDst", True),
        ({"contains": "mid"}, "md", False),
        ({"safe_regex": {"regex": r"\d{3}"}}, "123", True),
        ({"safe_regex": {"regex": r"\d{3}"}}, "1234", False),  # full match, not search
        ({"safe_regex": {"google_re2": {}, "regex": "v[0-9]+"}}, "v10", True),
    ],
)
def test_string_match(string_match: dict[str, Any], value: str, expected: bool) -> None:
    table = header_table({"name": "x-v", "string_match": string_match})
    assert hits(table, [("x-v", value)]) is expected


def test_multiple_values_are_joined_with_comma() -> None:
    table = header_table({"name": "x-v", "string_match": {"exact": "a,b"}})
    assert hits(table, [("x-v", "a"), ("other", "z"), ("x-v", "b")])
    assert not hits(table, [("x-v", "a")])


def test_header_name_is_case_insensitive_in_config() -> None:
    table = header_table({"name": "X-Mixed", "string_match": {"exact": "1"}})
    assert hits(table, [("x-mixed", "1")])


def test_all_header_matchers_must_match() -> None:
    table = header_table(
        {"name": "a", "string_match": {"exact": "1"}},
        {"name": "b", "string_match": {"exact": "2"}},
    )
    assert hits(table, [("a", "1"), ("b", "2")])
    assert not hits(table, [("a", "1"), ("b", "3")])


def test_present_and_absent() -> None:
    present = header_table({"name": "x-p", "present_match": True})
    absent = header_table({"name": "x-p", "present_match": False})
    no_specifier = header_table({"name": "x-p"})
    assert hits(present, [("x-p", "")])
    assert not hits(present, [])
    assert hits(absent, [])
    assert not hits(absent, [("x-p", "1")])
    assert hits(no_specifier, [("x-p", "any")])
    assert not hits(no_specifier, [])


def test_invert_match() -> None:
    table = header_table({"name": "x-v", "string_match": {"exact": "bad"}, "invert_match": True})
    assert hits(table, [("x-v", "good")])
    assert not hits(table, [("x-v", "bad")])
    # Envoy: a missing header fails an inverted value matcher (it is not "not equal").
    assert not hits(table, [])
    inverted_present = header_table({"name": "x-p", "present_match": True, "invert_match": True})
    assert hits(inverted_present, [])
    assert not hits(inverted_present, [("x-p", "1")])


def test_treat_missing_header_as_empty() -> None:
    empty_regex = header_table(
        {
            "name": "x-e",
            "string_match": {"safe_regex": {"regex": "^$"}},
            "treat_missing_header_as_empty": True,
        }
    )
    assert hits(empty_regex, [])
    assert not hits(empty_regex, [("x-e", "v")])
    inverted_range = header_table(
        {
            "name": "x-r",
            "range_match": {"start": "0", "end": "10"},
            "invert_match": True,
            "treat_missing_header_as_empty": True,
        }
    )
    assert hits(inverted_range, [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("-1", True), ("-10", True), ("0", False), ("-11", False), ("+5", False), ("-1x", False)],
)
def test_range_match(value: str, expected: bool) -> None:
    table = header_table({"name": "x-r", "range_match": {"start": "-10", "end": "0"}})
    assert hits(table, [("x-r", value)]) is expected
    assert not hits(table, [("x-r", "10.5")])


def test_deprecated_direct_fields() -> None:
    assert hits(header_table({"name": "a", "exact_match": "v"}), [("a", "v")])
    assert hits(header_table({"name": "a", "exact_match": ""}), [("a", "anything")])
    assert hits(header_table({"name": "a", "prefix_match": "ab"}), [("a", "abc")])
    assert hits(header_table({"name": "a", "suffix_match": "bc"}), [("a", "abc")])
    assert hits(header_table({"name": "a", "contains_match": "b"}), [("a", "abc")])
    assert hits(header_table({"name": "a", "safe_regex_match": {"regex": "a.c"}}), [("a", "abc")])
    assert not hits(header_table({"name": "a", "safe_regex_match": {"regex": "b"}}), [("a", "abc")])


def test_pseudo_headers_read_request_attributes() -> None:
    method = header_table({"name": ":method", "string_match": {"exact": "POST"}})
    assert hits(method, [], method="POST")
    assert not hits(method, [("method", "POST")], method="GET")
    path = header_table({"name": ":path", "string_match": {"suffix": "?x=1"}})
    assert route_name(path, request("/a?x=1")) == "hit"
    authority = header_table({"name": ":authority", "string_match": {"prefix": "api."}})
    assert hits(authority, [], authority="api.example.com")
    assert not hits(authority, [("host", "api.example.com")], authority="www.example.com")
    host = header_table({"name": "host", "string_match": {"exact": "h:8080"}})
    assert hits(host, [], authority="h:8080")
    scheme = header_table({"name": ":scheme", "string_match": {"exact": "https"}})
    assert hits(scheme, [], scheme="https")
    assert not hits(scheme, [], scheme="http")
    unknown_pseudo = header_table({"name": ":protocol", "present_match": False})
    assert hits(unknown_pseudo, [])


def query_table(*matchers: dict[str, Any]) -> Any:
    return routes(cluster_route("hit", {"prefix": "/", "query_parameters": list(matchers)}))


def test_query_parameters() -> None:
    exact = query_table({"name": "debug", "string_match": {"exact": "1"}})
    assert route_name(exact, request("/p?debug=1")) == "hit"
    assert route_name(exact, request("/p?a=2&debug=1#frag")) == "hit"
    assert route_name(exact, request("/p?debug=2")) is None
    # Only the first value of a repeated parameter counts.
    assert route_name(exact, request("/p?debug=2&debug=1")) is None
    # Values are not percent-decoded.
    encoded = query_table({"name": "q", "string_match": {"exact": "a b"}})
    assert route_name(encoded, request("/p?q=a%20b")) is None
    present = query_table({"name": "flag", "present_match": True})
    assert route_name(present, request("/p?flag")) == "hit"
    assert route_name(present, request("/p?other=1")) is None
    assert route_name(present, request("/p#flag")) is None
    absent = query_table({"name": "flag", "present_match": False})
    assert route_name(absent, request("/p?other=1")) == "hit"
    assert route_name(absent, request("/p?flag=x")) is None
    regex = query_table({"name": "id", "string_match": {"safe_regex": {"regex": "[0-9]+"}}})
    assert route_name(regex, request("/p?id=42")) == "hit"
    assert route_name(regex, request("/p?id=4x")) is None


def test_parse_query() -> None:
    assert parse_query("a=1&&b&a=2&c=x=y") == {"a": "1", "b": "", "c": "x=y"}


def test_grpc_match() -> None:
    table = routes(
        cluster_route("grpc", {"prefix": "/", "grpc": {}}),
        cluster_route("rest", {"prefix": "/"}),
    )
    for content_type in ("application/grpc", "application/grpc+proto", "application/grpc;x=1"):
        assert route_name(table, request(headers=[("content-type", content_type)])) == "grpc"
    for content_type in ("application/grpcx", "application/json"):
        assert route_name(table, request(headers=[("content-type", content_type)])) == "rest"
    assert route_name(table, request()) == "rest"
