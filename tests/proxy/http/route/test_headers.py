from __future__ import annotations

import random
from typing import Any

import pytest

from remora.proxy.http.route import RouteResult
from tests.proxy.http.route.util import build, errors_of, must_route, request


def add(key: str, value: str, action: str | None = None, **extra: Any) -> dict[str, Any]:
    option: dict[str, Any] = {"header": {"key": key, "value": value}, **extra}
    if action is not None:
        option["append_action"] = action
    return option


def levels(
    route: dict[str, Any] | None = None,
    vhost: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    wins: bool = False,
) -> RouteResult:
    """Route one request through a table with header mutations at each level."""
    route_entry = {
        "name": "r",
        "match": {"prefix": "/"},
        "route": {"cluster": "c"},
        **(route or {}),
    }
    table = build(
        {
            "most_specific_header_mutations_wins": wins,
            "virtual_hosts": [
                {"name": "v", "domains": ["*"], "routes": [route_entry], **(vhost or {})}
            ],
            **(config or {}),
        }
    )
    return must_route(table, request())


def req_add(*options: dict[str, Any]) -> dict[str, Any]:
    return {"request_headers_to_add": list(options)}


OVERWRITE = "OVERWRITE_IF_EXISTS_OR_ADD"


def test_default_order_lets_the_least_specific_level_win() -> None:
    result = levels(
        route=req_add(add("x-level", "route", OVERWRITE)),
        vhost=req_add(add("x-level", "vhost", OVERWRITE)),
        config=req_add(add("x-level", "config", OVERWRITE)),
    )
    assert result.apply_request_headers([("x-level", "client")]) == [("x-level", "config")]


def test_most_specific_header_mutations_wins() -> None:
    result = levels(
        route=req_add(add("x-level", "route", OVERWRITE)),
        vhost=req_add(add("x-level", "vhost", OVERWRITE)),
        config=req_add(add("x-level", "config", OVERWRITE)),
        wins=True,
    )
    assert result.apply_request_headers([]) == [("x-level", "route")]


@pytest.mark.parametrize(
    ("wins", "expected"),
    [(False, ["route", "vhost", "config"]), (True, ["config", "vhost", "route"])],
)
def test_appends_follow_level_order(wins: bool, expected: list[str]) -> None:
    result = levels(
        route=req_add(add("x-trace", "route")),
        vhost=req_add(add("x-trace", "vhost")),
        config=req_add(add("x-trace", "config")),
        wins=wins,
    )
    assert [v for k, v in result.apply_request_headers([]) if k == "x-trace"] == expected


@pytest.mark.parametrize(("wins", "expected"), [(False, "route"), (True, "vhost")])
def test_add_if_absent_sees_earlier_levels(wins: bool, expected: str) -> None:
    result = levels(
        route=req_add(add("x-once", "route", "ADD_IF_ABSENT")),
        vhost=req_add(add("x-once", "vhost", "ADD_IF_ABSENT")),
        wins=wins,
    )
    assert result.apply_request_headers([]) == [("x-once", expected)]
    assert result.apply_request_headers([("x-once", "client")]) == [("x-once", "client")]


@pytest.mark.parametrize(("wins", "present"), [(False, False), (True, True)])
def test_a_later_level_removes_what_an_earlier_one_added(wins: bool, present: bool) -> None:
    result = levels(
        route=req_add(add("x-tmp", "1")),
        config={"request_headers_to_remove": ["X-Tmp"]},
        wins=wins,
    )
    assert (("x-tmp", "1") in result.apply_request_headers([])) is present


def test_append_actions_within_one_level() -> None:
    result = levels(
        route={
            "request_headers_to_remove": ["x-gone"],
            "request_headers_to_add": [
                add("x-gone", "re-added"),  # removal happens before additions
                add("x-app", "2"),
                add("x-new", "a", "ADD_IF_ABSENT"),
                add("x-new", "b", "ADD_IF_ABSENT"),  # both: evaluated before either is added
                add("x-keep", "no", "ADD_IF_ABSENT"),
                add("x-ow", "new", "OVERWRITE_IF_EXISTS"),
                add("x-ow-absent", "new", "OVERWRITE_IF_EXISTS"),
                add("x-set", "one", OVERWRITE),
            ],
        }
    )
    original = [
        ("x-gone", "old"),
        ("x-app", "1"),
        ("x-keep", "yes"),
        ("x-ow", "1"),
        ("other", "o"),
        ("x-ow", "2"),
    ]
    out = result.apply_request_headers(original)
    assert out == [
        ("x-app", "1"),
        ("x-keep", "yes"),
        ("x-ow", "new"),
        ("other", "o"),
        ("x-set", "one"),
        ("x-gone", "re-added"),
        ("x-app", "2"),
        ("x-new", "a"),
        ("x-new", "b"),
    ]
    assert original[0] == ("x-gone", "old")  # the caller's list is not mutated


def test_deprecated_append_and_keep_empty_value() -> None:
    result = levels(
        route=req_add(
            add("x-a", "appended", append=True),
            add("x-o", "overwritten", append=False),
            add("x-empty", ""),
            add("x-kept", "", keep_empty_value=True),
        )
    )
    out = result.apply_request_headers([("x-a", "1"), ("x-o", "1"), ("x-empty", "client")])
    assert out == [
        ("x-a", "1"),
        ("x-o", "overwritten"),
        ("x-empty", "client"),
        ("x-a", "appended"),
        ("x-kept", ""),
    ]


def test_raw_value_and_uppercase_key() -> None:
    result = levels(route=req_add({"header": {"key": "X-Raw", "raw_value": "qXk="}}))
    assert result.apply_request_headers([]) == [("x-raw", "\xa9y")]


def test_response_headers_and_weighted_cluster_level() -> None:
    cluster_level = {
        "response_headers_to_add": [add("x-who", "cluster", OVERWRITE)],
        "response_headers_to_remove": ["server"],
    }
    for wins, expected in (
        (False, [("content-length", "0"), ("x-who", "route"), ("x-config", "1")]),
        (True, [("content-length", "0"), ("x-config", "1"), ("x-who", "cluster")]),
    ):
        table = build(
            {
                "most_specific_header_mutations_wins": wins,
                "response_headers_to_add": [add("x-config", "1")],
                "virtual_hosts": [
                    {
                        "name": "v",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "response_headers_to_add": [add("x-who", "route", OVERWRITE)],
                                "route": {
                                    "weighted_clusters": {
                                        "clusters": [{"name": "only", "weight": 1, **cluster_level}]
                                    }
                                },
                            }
                        ],
                    }
                ],
            },
            rng=random.Random(1),
        )
        result = must_route(table, request())
        out = result.apply_response_headers([("server", "up"), ("content-length", "0")])
        assert out == expected
        assert result.apply_request_headers([("a", "b")]) == [("a", "b")]


def test_redirect_and_direct_response_get_response_headers() -> None:
    table = build(
        {
            "response_headers_to_add": [add("x-config", "1")],
            "virtual_hosts": [
                {
                    "name": "v",
                    "domains": ["*"],
                    "response_headers_to_add": [add("x-vhost", "1")],
                    "routes": [
                        {"match": {"path": "/r"}, "redirect": {"path_redirect": "/x"}},
                        {"match": {"path": "/d"}, "direct_response": {"status": 200}},
                    ],
                }
            ],
        }
    )
    for path in ("/r", "/d"):
        out = must_route(table, request(path)).apply_response_headers([])
        assert out == [("x-vhost", "1"), ("x-config", "1")]


def test_value_commands_from_context() -> None:
    result = levels(
        route=req_add(
            add("x-client", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
            add("x-mixed", "[%PROTOCOL%|%HOSTNAME%]"),
            add("x-percent", "100%%"),
        )
    )
    context = {
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": "10.0.0.1",
        "PROTOCOL": "HTTP/1.1",
        "HOSTNAME": "node",
    }
    assert result.apply_request_headers([], context) == [
        ("x-client", "10.0.0.1"),
        ("x-mixed", "[HTTP/1.1|node]"),
        ("x-percent", "100%"),
    ]
    # Without a context, a value that renders empty is dropped, as Envoy does.
    assert result.apply_request_headers([]) == [("x-mixed", "[|]"), ("x-percent", "100%")]


def test_header_mutation_errors() -> None:
    route_entry = {
        "match": {"prefix": "/"},
        "route": {"cluster": "c"},
        "request_headers_to_add": [
            add("x-up", '%UPSTREAM_METADATA(["a"])%'),
            add("x-half", "50%"),
            add("host", "h"),
            add(":path", "/x"),
            add("x-both", "v", "ADD_IF_ABSENT", append=True),
            add("bad name", "v"),
        ],
        "response_headers_to_remove": [":status", "Host"],
    }
    errors = errors_of(
        {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [route_entry]}]}
    )
    at = "route_config.virtual_hosts[0].routes[0]"
    assert errors == [
        (
            f"{at}.request_headers_to_add[0].header.value",
            f'not supported: header value command %UPSTREAM_METADATA(["a"])% in '
            f"{at}.request_headers_to_add[0].header.value",
        ),
        (
            f"{at}.request_headers_to_add[1].header.value",
            "invalid header value '50%': no command at offset 2 (write %% for %)",
        ),
        (
            f"{at}.request_headers_to_add[2].header.key",
            ":-prefixed or host headers may not be modified",
        ),
        (
            f"{at}.request_headers_to_add[3].header.key",
            ":-prefixed or host headers may not be modified",
        ),
        (f"{at}.request_headers_to_add[4].append", "append and append_action may not both be set"),
        (f"{at}.request_headers_to_add[5].header.key", "invalid header name 'bad name'"),
        (
            f"{at}.response_headers_to_remove[0]",
            "header ':status' may not be removed (:-prefixed, host or invalid name)",
        ),
        (
            f"{at}.response_headers_to_remove[1]",
            "header 'Host' may not be removed (:-prefixed, host or invalid name)",
        ),
    ]
