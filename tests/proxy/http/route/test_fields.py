"""The support walker accepts exactly what the route compiler implements."""

from __future__ import annotations

from typing import Any

import remora.config.compile  # registers every field, as a running proxy has them
import remora.proxy.http.route  # noqa: F401
from remora.config.support import check
from tests.proxy.http.route.util import compile_dict, parse

EVERYTHING: dict[str, Any] = {
    "name": "rc",
    "most_specific_header_mutations_wins": True,
    "ignore_port_in_host_matching": True,
    "ignore_path_parameters_in_path_matching": True,
    "max_direct_response_body_size_bytes": 100,
    "request_headers_to_add": [{"header": {"key": "a", "value": "1"}, "append": False}],
    "request_headers_to_remove": ["b"],
    "response_headers_to_add": [
        {"header": {"key": "c", "raw_value": "eA=="}, "append_action": "ADD_IF_ABSENT"}
    ],
    "response_headers_to_remove": ["d"],
    "virtual_hosts": [
        {
            "name": "vh",
            "domains": ["*"],
            "request_headers_to_add": [
                {"header": {"key": "e", "value": ""}, "keep_empty_value": True}
            ],
            "include_request_attempt_count": True,
            "per_request_buffer_limit_bytes": 1024,
            "retry_policy": {"retry_on": "5xx"},
            "routes": [
                {
                    "name": "r1",
                    "match": {
                        "safe_regex": {"google_re2": {}, "regex": "/a.*"},
                        "headers": [
                            {"name": "h1", "string_match": {"exact": "x", "ignore_case": True}},
                            {"name": "h2", "range_match": {"start": "1", "end": "9"}},
                            {"name": "h3", "present_match": True, "invert_match": True},
                            {
                                "name": "h4",
                                "exact_match": "x",
                                "treat_missing_header_as_empty": True,
                            },
                            {"name": "h5", "safe_regex_match": {"regex": "x"}},
                            {"name": "h6", "prefix_match": "x"},
                            {"name": "h7", "suffix_match": "x"},
                            {"name": "h8", "contains_match": "x"},
                        ],
                        "query_parameters": [
                            {"name": "q1", "string_match": {"safe_regex": {"regex": "x"}}},
                            {"name": "q2", "present_match": True},
                        ],
                        "grpc": {},
                    },
                    "route": {
                        "weighted_clusters": {
                            "clusters": [
                                {
                                    "name": "w",
                                    "weight": 1,
                                    "host_rewrite_literal": "h",
                                    "request_headers_to_add": [
                                        {"header": {"key": "f", "value": "1"}}
                                    ],
                                    "request_headers_to_remove": ["g"],
                                    "response_headers_to_add": [
                                        {"header": {"key": "i", "value": "1"}}
                                    ],
                                    "response_headers_to_remove": ["j"],
                                }
                            ],
                            "total_weight": 1,
                            "header_name": "x-rand",
                        },
                        "regex_rewrite": {"pattern": {"regex": "a"}, "substitution": "b"},
                        "auto_host_rewrite": True,
                        "timeout": "3s",
                        "retry_policy": {
                            "retry_on": "5xx,gateway-error,reset,connect-failure,retriable-4xx,"
                            "refused-stream,retriable-status-codes,retriable-headers",
                            "num_retries": 2,
                            "per_try_timeout": "1s",
                            "retry_back_off": {"base_interval": "0.01s", "max_interval": "1s"},
                            "retriable_status_codes": [418],
                            "retriable_headers": [{"name": "x-retry", "present_match": True}],
                            "retry_host_predicate": [
                                {
                                    "name": "envoy.retry_host_predicates.previous_hosts",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.retry."
                                        "host.previous_hosts.v3.PreviousHostsPredicate"
                                    },
                                }
                            ],
                            "host_selection_retry_max_attempts": 3,
                        },
                    },
                    "per_request_buffer_limit_bytes": 10,
                    "request_headers_to_remove": ["k"],
                    "response_headers_to_remove": ["l"],
                },
                {
                    "match": {"path_separated_prefix": "/p", "case_sensitive": False},
                    "route": {"cluster": "c", "prefix_rewrite": "/", "host_rewrite_literal": "h"},
                },
                {
                    "match": {"path": "/r"},
                    "redirect": {
                        "scheme_redirect": "https",
                        "host_redirect": "h",
                        "port_redirect": 1,
                        "regex_rewrite": {"pattern": {"regex": "a"}, "substitution": "b"},
                        "response_code": "FOUND",
                        "strip_query": True,
                    },
                },
                {
                    "match": {"prefix": "/s"},
                    "redirect": {"https_redirect": True, "path_redirect": "/"},
                },
                {"match": {"prefix": "/t"}, "redirect": {"prefix_rewrite": "/"}},
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_bytes": "eA=="}},
                },
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": "x"}},
                },
            ],
        }
    ],
}


def test_every_implemented_field_is_accepted_and_compiles() -> None:
    errors, warnings = check(parse(EVERYTHING), "route_config")
    assert errors == []
    assert warnings == []
    assert compile_dict(EVERYTHING)[1] == []


def test_unimplemented_fields_are_rejected_with_their_path() -> None:
    config: dict[str, Any] = {
        "validate_clusters": False,
        "virtual_hosts": [
            {
                "name": "vh",
                "domains": ["*"],
                "require_tls": "ALL",
                "routes": [
                    {
                        "match": {
                            "prefix": "/",
                            "runtime_fraction": {"default_value": {"numerator": 1}},
                        },
                        "route": {
                            "cluster": "c",
                            "retry_policy": {"retry_on": "5xx", "per_try_idle_timeout": "1s"},
                            "regex_rewrite": {
                                "pattern": {"google_re2": {"max_program_size": 10}, "regex": "a"},
                                "substitution": "b",
                            },
                        },
                        "decorator": {"operation": "op"},
                    },
                    {
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"filename": "/x"}},
                    },
                ],
            }
        ],
    }
    errors, warnings = check(parse(config), "route_config")
    at = "route_config.virtual_hosts[0]"
    assert sorted(error.path for error in errors) == sorted(
        [
            f"{at}.require_tls",
            f"{at}.routes[0].match.runtime_fraction",
            f"{at}.routes[0].route.retry_policy.per_try_idle_timeout",
            f"{at}.routes[0].decorator",
        ]
    )
    assert all(error.message == f"not supported: {error.path}" for error in errors)
    # DataSource.filename is a field TLS contexts read; a direct response refuses it itself.
    _, compiled = compile_dict(config)
    assert any(
        field.endswith("routes[1].direct_response.body.filename") and "not supported" in message
        for field, message in compiled
    ), compiled
    assert len(warnings) == 1
    assert warnings[0].startswith("ignored: route_config.validate_clusters")
