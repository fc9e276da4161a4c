from __future__ import annotations

from typing import Any

from tests.proxy.http.route.util import compile_dict, request, route_name

AT = "route_config.virtual_hosts[0].routes"


def one_vhost(*entries: dict[str, Any], name: str = "v") -> dict[str, Any]:
    return {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": list(entries)}]}


def test_every_error_is_reported_with_its_path_and_good_routes_survive() -> None:
    table, errors = compile_dict(
        one_vhost(
            {"name": "no-match", "route": {"cluster": "c"}},
            {"name": "no-action", "match": {"prefix": "/"}},
            {
                "name": "bad-regex",
                "match": {"safe_regex": {"regex": "(unclosed"}},
                "route": {"cluster": "c"},
            },
            {
                "name": "backref",
                "match": {"safe_regex": {"regex": r"(a)\1"}},
                "route": {"cluster": "c"},
            },
            {"name": "empty-cluster", "match": {"prefix": "/"}, "route": {"cluster": ""}},
            {"name": "no-cluster", "match": {"prefix": "/"}, "route": {"timeout": "1s"}},
            {"name": "good", "match": {"prefix": "/"}, "route": {"cluster": "c"}},
        )
    )
    assert [path for path, _ in errors] == [
        f"{AT}[0].match",
        f"{AT}[1]",
        f"{AT}[2].match.safe_regex.regex",
        f"{AT}[3].match.safe_regex.regex",
        f"{AT}[4].route.cluster",
        f"{AT}[5].route",
    ]
    messages = dict(errors)
    assert messages[f"{AT}[0].match"] == "a route needs a match"
    assert messages[f"{AT}[1]"] == "a route needs one of route, redirect or direct_response"
    assert messages[f"{AT}[2].match.safe_regex.regex"].startswith("invalid RE2 regex '(unclosed'")
    assert "invalid escape sequence: \\1" in messages[f"{AT}[3].match.safe_regex.regex"]
    assert messages[f"{AT}[5].route"] == "a route action needs cluster or weighted_clusters"
    # The broken routes are left out; the table still routes with what is valid.
    assert route_name(table, request("/x")) == "good"


def test_empty_match_has_no_path_specifier() -> None:
    _, errors = compile_dict(
        one_vhost({"match": {"headers": [{"name": "a"}]}, "route": {"cluster": "c"}})
    )
    assert errors == [
        (
            f"{AT}[0].match",
            "a route match needs one of prefix, path, safe_regex or path_separated_prefix",
        )
    ]


def test_unsupported_oneof_choices_are_named() -> None:
    _, errors = compile_dict(
        one_vhost(
            {"match": {"connect_matcher": {}}, "route": {"cluster": "c"}},
            {"match": {"prefix": "/"}, "route": {"cluster_header": "x-cluster"}},
            {"match": {"prefix": "/"}, "non_forwarding_action": {}},
            {"match": {"prefix": "/"}, "route": {"cluster": "c", "host_rewrite_header": "x-h"}},
            {
                "match": {"prefix": "/"},
                "route": {
                    "weighted_clusters": {"clusters": [{"cluster_header": "x", "weight": 1}]}
                },
            },
        )
    )
    assert errors == [
        (f"{AT}[0].match.connect_matcher", f"not supported: {AT}[0].match.connect_matcher"),
        (f"{AT}[1].route.cluster_header", f"not supported: {AT}[1].route.cluster_header"),
        (f"{AT}[2].non_forwarding_action", f"not supported: {AT}[2].non_forwarding_action"),
        (f"{AT}[3].route.host_rewrite_header", f"not supported: {AT}[3].route.host_rewrite_header"),
        (
            f"{AT}[4].route.weighted_clusters.clusters[0].cluster_header",
            f"not supported: {AT}[4].route.weighted_clusters.clusters[0].cluster_header",
        ),
    ]


def test_rewrite_and_timeout_errors() -> None:
    rewrite = {"pattern": {"regex": "(a)"}, "substitution": r"\2"}
    _, errors = compile_dict(
        one_vhost(
            {
                "match": {"prefix": "/"},
                "route": {"cluster": "c", "prefix_rewrite": "/x", "regex_rewrite": rewrite},
            },
            {"match": {"prefix": "/"}, "route": {"cluster": "c", "regex_rewrite": rewrite}},
            {"match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "-1s"}},
            {
                "match": {"prefix": "/"},
                "redirect": {"regex_rewrite": {"pattern": {"regex": "(?=x)"}}},
            },
            {"match": {"path_separated_prefix": "/api/"}, "route": {"cluster": "c"}},
            {"match": {"prefix": "/"}, "redirect": {"port_redirect": 70000}},
        )
    )
    assert errors == [
        (f"{AT}[0].route.regex_rewrite", "only one of prefix_rewrite and regex_rewrite may be set"),
        (
            f"{AT}[1].route.regex_rewrite.substitution",
            "substitution refers to group \\2 but the pattern has 1 group(s)",
        ),
        (f"{AT}[2].route.timeout", "timeout must not be negative"),
        (
            f"{AT}[3].redirect.regex_rewrite.pattern.regex",
            "invalid RE2 regex '(?=x)': invalid perl operator: (?=",
        ),
        (
            f"{AT}[4].match.path_separated_prefix",
            "'/api/' must not be empty, contain ? or #, or end with /",
        ),
        (f"{AT}[5].redirect.port_redirect", "port_redirect must be at most 65535"),
    ]


def test_matcher_errors() -> None:
    _, errors = compile_dict(
        one_vhost(
            {
                "match": {
                    "prefix": "/",
                    "headers": [
                        {"name": "", "present_match": True},
                        {"name": "a", "prefix_match": ""},
                        {"name": "b", "range_match": {"start": "5", "end": "5"}},
                        {"name": "c", "string_match": {"suffix": ""}},
                        {"name": "d", "string_match": {"ignore_case": True}},
                        {"name": "e", "string_match": {"safe_regex": {"regex": "a{2,1}"}}},
                    ],
                    "query_parameters": [{"name": "", "present_match": True}],
                },
                "route": {"cluster": "c"},
            }
        )
    )
    m = f"{AT}[0].match"
    assert errors == [
        (f"{m}.headers[0].name", "invalid header name ''"),
        (f"{m}.headers[1].prefix_match", "prefix_match must not be empty; use present_match"),
        (f"{m}.headers[2].range_match", "range start must be lower than end"),
        (f"{m}.headers[3].string_match.suffix", "suffix must not be empty"),
        (
            f"{m}.headers[4].string_match",
            "a StringMatcher needs one of exact, prefix, suffix, contains, safe_regex",
        ),
        (
            f"{m}.headers[5].string_match.safe_regex.regex",
            "invalid RE2 regex 'a{2,1}': invalid repetition size: {2,1}",
        ),
        (f"{m}.query_parameters[0].name", "a query parameter name is required"),
    ]


def test_virtual_host_needs_a_name() -> None:
    _, errors = compile_dict(
        one_vhost({"match": {"prefix": "/"}, "route": {"cluster": "c"}}, name="")
    )
    assert errors == [("route_config.virtual_hosts[0].name", "a virtual host needs a name")]


def test_a_valid_config_compiles_clean() -> None:
    table, errors = compile_dict(
        {
            "name": "local_route",
            "virtual_hosts": [
                {
                    "name": "backend",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/service/1"}, "route": {"cluster": "service1"}},
                        {"match": {"prefix": "/service/2"}, "route": {"cluster": "service2"}},
                    ],
                }
            ],
        }
    )
    assert errors == []
    assert table.name == "local_route"
    assert route_name(table, request("/service/2/x")) == ""
    result = table.route(request("/service/2/x"))
    assert result is not None and result.cluster == "service2"
