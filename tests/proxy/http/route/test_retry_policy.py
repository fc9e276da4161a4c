"""A route's retry_policy: compiled from the proto, inherited from the virtual host, refused by
path when it names what remora does not implement."""

from __future__ import annotations

from typing import Any

# Known to the descriptor pool, so the walker (not the JSON parser) is what refuses it.
from envoy.extensions.retry.host.omit_canary_hosts.v3 import omit_canary_hosts_pb2  # noqa: F401

from remora.config.support import check
from remora.proxy.http.route.retry_rules import (
    CONNECT_FAILURE,
    RETRIABLE_HEADERS,
    RETRY_5XX,
    RetryPolicy,
    classify_response,
)
from tests.proxy.http.route.util import build, errors_of, must_route, parse, request

PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
        "PreviousHostsPredicate"
    },
}


def _config(
    route_policy: dict[str, Any] | None = None,
    vhost_policy: dict[str, Any] | None = None,
    **vhost: Any,
) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": "c"}
    if route_policy is not None:
        action["retry_policy"] = route_policy
    host: dict[str, Any] = {
        "name": "vh",
        "domains": ["*"],
        "routes": [
            {"match": {"prefix": "/own"}, "route": action},
            {"match": {"prefix": "/"}, "route": {"cluster": "c"}},
        ],
        **vhost,
    }
    if vhost_policy is not None:
        host["retry_policy"] = vhost_policy
    return {"name": "rc", "virtual_hosts": [host]}


def _policy(path: str, config: dict[str, Any]) -> RetryPolicy | None:
    return must_route(build(config), request(path)).retry_policy


def test_defaults_follow_envoy() -> None:
    policy = _policy("/own", _config({"retry_on": "5xx"}))
    assert policy == RetryPolicy(retry_on=RETRY_5XX)
    assert (policy.num_retries, policy.base_interval, policy.max_interval) == (1, 0.025, 0.25)
    assert policy.per_try_timeout is None and not policy.previous_hosts
    assert _policy("/", _config()) is None


def test_every_field_compiles() -> None:
    policy = _policy(
        "/own",
        _config(
            {
                "retry_on": "connect-failure,retriable-headers",
                "num_retries": 3,
                "per_try_timeout": "0.5s",
                "retry_back_off": {"base_interval": "0.1s"},
                "retriable_status_codes": [418, 503],
                "retriable_headers": [
                    {"name": "x-again", "present_match": True},
                    {"name": ":status", "range_match": {"start": "500", "end": "503"}},
                ],
                "retry_host_predicate": [PREVIOUS_HOSTS],
                "host_selection_retry_max_attempts": 5,
            }
        ),
    )
    assert policy is not None
    assert policy.retry_on == CONNECT_FAILURE | RETRIABLE_HEADERS
    assert (policy.num_retries, policy.per_try_timeout) == (3, 0.5)
    assert (policy.base_interval, policy.max_interval) == (0.1, 1.0)  # max: 10 x base
    assert policy.retriable_status_codes == {418, 503}
    assert policy.previous_hosts and policy.host_selection_attempts == 5
    # `:status` is matched against the response's status.
    assert classify_response(policy, 501, [])
    assert not classify_response(policy, 503, [])
    assert classify_response(policy, 200, [("x-again", "")])


def test_route_policy_replaces_the_virtual_hosts_whole() -> None:
    config = _config(
        {"retry_on": "reset"},
        {"retry_on": "5xx", "num_retries": 4},
        include_request_attempt_count=True,
        per_request_buffer_limit_bytes=100,
    )
    inherited = _policy("/", config)
    assert inherited is not None
    assert (inherited.retry_on, inherited.num_retries, inherited.buffer_limit) == (
        RETRY_5XX,
        4,
        100,
    )
    assert inherited.attempt_count_header
    own = _policy("/own", config)
    assert own is not None and own.num_retries == 1 and own.attempt_count_header


def test_route_buffer_limit_overrides_the_virtual_hosts() -> None:
    config = _config(vhost_policy={"retry_on": "5xx"}, per_request_buffer_limit_bytes=100)
    config["virtual_hosts"][0]["routes"][1]["per_request_buffer_limit_bytes"] = 7
    policy = _policy("/", config)
    assert policy is not None and policy.buffer_limit == 7


def test_attempt_count_alone_needs_no_retries() -> None:
    policy = _policy("/", _config(include_request_attempt_count=True))
    assert policy is not None and policy.num_retries == 0 and policy.attempt_count_header


def test_bad_values_are_refused_with_their_path() -> None:
    at = "route_config.virtual_hosts[0]"
    assert errors_of(_config({"retry_on": "5xx,5xxx"})) == [
        (f"{at}.routes[0].route.retry_policy.retry_on", "unknown retry_on condition '5xxx'")
    ]
    assert errors_of(_config(vhost_policy={"retry_on": "envoy-ratelimited"})) == [
        (
            f"{at}.retry_policy.retry_on",
            f"not supported: {at}.retry_policy.retry_on ('envoy-ratelimited')",
        )
    ]
    back_off = f"{at}.routes[0].route.retry_policy.retry_back_off"
    assert errors_of(
        _config({"retry_back_off": {"base_interval": "1s", "max_interval": "0.5s"}})
    ) == [(f"{back_off}.max_interval", "must be greater than or equal to base_interval")]
    assert errors_of(_config({"retry_back_off": {"max_interval": "1s"}})) == [
        (f"{back_off}.base_interval", "is required")
    ]
    assert errors_of(_config({"retriable_headers": [{"name": "Bad Name"}]})) == [
        (
            f"{at}.routes[0].route.retry_policy.retriable_headers[0].name",
            "invalid header name 'Bad Name'",
        )
    ]


def test_unimplemented_subfields_are_refused_by_path() -> None:
    omit_canary = {
        "name": "envoy.retry_host_predicates.omit_canary_hosts",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.retry.host.omit_canary_hosts.v3."
            "OmitCanaryHostsPredicate"
        },
    }
    config = _config(
        {
            "retry_on": "5xx",
            "rate_limited_retry_back_off": {"reset_headers": [{"name": "retry-after"}]},
            "retry_host_predicate": [omit_canary],
        }
    )
    errors, _ = check(parse(config), "route_config")
    at = "route_config.virtual_hosts[0].routes[0].route.retry_policy"
    assert sorted(e.path for e in errors) == [
        f"{at}.rate_limited_retry_back_off",
        f"{at}.retry_host_predicate[0].typed_config",
    ]
