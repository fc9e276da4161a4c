"""The retry decider: which outcomes are retriable, in which order the limits apply, back-off."""

from __future__ import annotations

import random

from remora.proxy.http.route.retry_rules import (
    CONNECT_FAILED,
    CONNECT_FAILURE,
    GATEWAY_ERROR,
    LIMIT_EXCEEDED,
    NO_RETRY,
    OVERFLOW,
    PER_TRY_TIMEOUT,
    REFUSED_STREAM,
    RESET,
    RESET_BEFORE_RESPONSE,
    RETRIABLE_4XX,
    RETRIABLE_HEADERS,
    RETRIABLE_STATUS_CODES,
    RETRY,
    RETRY_5XX,
    RetryPolicy,
    backoff,
    classify_failure,
    classify_response,
    decide,
    merge_headers,
    parse_retry_on,
    present_matcher,
    retry_limit,
    split_retry_headers,
)


def test_retry_on_tokens_parse_to_bits_and_report_the_unknown() -> None:
    bits, unknown = parse_retry_on(" 5xx, reset ,,connect-failure,bogus")
    assert bits == RETRY_5XX | RESET | CONNECT_FAILURE
    assert unknown == ["bogus"]
    assert parse_retry_on("") == (0, [])


def test_status_conditions() -> None:
    def retriable(retry_on: int, status: int, codes: frozenset[int] = frozenset()) -> bool:
        policy = RetryPolicy(retry_on=retry_on, retriable_status_codes=codes)
        return classify_response(policy, status, [])

    assert retriable(RETRY_5XX, 500) and retriable(RETRY_5XX, 599)
    assert not retriable(RETRY_5XX, 499)
    assert [s for s in (500, 501, 502, 503, 504, 505) if retriable(GATEWAY_ERROR, s)] == [
        502,
        503,
        504,
    ]
    assert retriable(RETRIABLE_4XX, 409) and not retriable(RETRIABLE_4XX, 404)
    # Status codes count only under retriable-status-codes.
    assert not retriable(RESET, 418, codes=frozenset({418}))
    assert retriable(RETRIABLE_STATUS_CODES, 418, codes=frozenset({418}))
    assert not retriable(RETRIABLE_STATUS_CODES, 419, codes=frozenset({418}))
    # Connection-level conditions never retry a response.
    assert not retriable(RESET | CONNECT_FAILURE | REFUSED_STREAM, 503)


def test_retriable_headers_match_the_response() -> None:
    policy = RetryPolicy(
        retry_on=RETRIABLE_HEADERS, retriable_headers=(present_matcher("x-try-again"),)
    )
    assert classify_response(policy, 200, [("x-try-again", "1")])
    assert not classify_response(policy, 200, [("x-other", "1")])
    without_condition = RetryPolicy(retriable_headers=policy.retriable_headers)
    assert not classify_response(without_condition, 200, [("x-try-again", "1")])


def test_failures_by_condition() -> None:
    for bits in (RETRY_5XX, GATEWAY_ERROR):
        assert all(
            classify_failure(bits, f)
            for f in (CONNECT_FAILED, RESET_BEFORE_RESPONSE, PER_TRY_TIMEOUT)
        )
    assert classify_failure(CONNECT_FAILURE, CONNECT_FAILED)
    assert not classify_failure(CONNECT_FAILURE, RESET_BEFORE_RESPONSE)
    assert not classify_failure(CONNECT_FAILURE, PER_TRY_TIMEOUT)
    assert classify_failure(RESET, RESET_BEFORE_RESPONSE)
    assert classify_failure(RESET, CONNECT_FAILED)
    assert classify_failure(RESET, PER_TRY_TIMEOUT)
    # HTTP/1.1 has no REFUSED_STREAM: the condition is accepted and never fires.
    assert not any(
        classify_failure(REFUSED_STREAM | RETRIABLE_4XX, f)
        for f in (CONNECT_FAILED, RESET_BEFORE_RESPONSE, PER_TRY_TIMEOUT)
    )


def test_decisions_apply_the_request_limit_before_the_breaker() -> None:
    assert decide(False, 0, 1, 0, 3) == NO_RETRY
    assert decide(True, 0, 1, 0, 3) == RETRY
    assert decide(True, 1, 1, 0, 3) == LIMIT_EXCEEDED
    assert decide(True, 1, 1, 3, 3) == LIMIT_EXCEEDED
    assert decide(True, 0, 2, 3, 3) == OVERFLOW
    assert decide(True, 0, 0, 0, 3) == LIMIT_EXCEEDED


def test_breaker_limit_from_max_retries_or_budget() -> None:
    assert retry_limit(3, None, 1000, 1000) == 3
    # The budget overrides max_retries: 20% of active + pending, at least min_retry_concurrency.
    assert retry_limit(3, (20.0, 3), 100, 50) == 30
    assert retry_limit(3, (20.0, 3), 4, 0) == 3
    assert retry_limit(100, (0.0, 0), 50, 0) == 0


def test_backoff_is_fully_jittered_and_capped() -> None:
    base, cap = 0.025, 0.25
    assert backoff(1, base, cap, 0.0) == 0.0
    assert backoff(1, base, cap, 0.999) < base
    assert 0.074 < backoff(2, base, cap, 0.999) < 0.075
    assert 0.174 < backoff(3, base, cap, 0.999) < 0.175
    assert backoff(4, base, cap, 0.999) < cap  # 15 * base is over the cap
    assert backoff(500, base, cap, 0.5) == cap / 2
    rng = random.Random(7)
    draws = [backoff(1, base, cap, rng.random()) for _ in range(2000)]
    assert min(draws) < 0.002 and max(draws) > 0.023  # spread over the whole range


def test_request_headers_merge_into_the_policy() -> None:
    route = RetryPolicy(retry_on=CONNECT_FAILURE, num_retries=2)
    merged = merge_headers(
        route,
        [
            ("x-envoy-retry-on", "5xx,unknown-token"),
            ("x-envoy-max-retries", "4"),
            ("x-envoy-retriable-status-codes", "418, 429,x"),
            ("x-envoy-retriable-header-names", "X-Again"),
        ],
    )
    assert merged is not None
    assert merged.retry_on == CONNECT_FAILURE | RETRY_5XX
    assert merged.num_retries == 4
    assert merged.retriable_status_codes == frozenset({418, 429})
    assert [m.name for m in merged.retriable_headers] == ["x-again"]
    # Without a route policy only x-envoy-retry-on enables retries (once by default).
    assert merge_headers(None, [("x-envoy-max-retries", "3")]) is None
    alone = merge_headers(None, [("x-envoy-retry-on", "gateway-error")])
    assert alone is not None and (alone.retry_on, alone.num_retries) == (GATEWAY_ERROR, 1)
    # A value that does not parse leaves the policy's.
    kept = merge_headers(route, [("x-envoy-max-retries", "-1")])
    assert kept is not None and kept.num_retries == 2


def test_retry_headers_are_split_off() -> None:
    kept, taken = split_retry_headers(
        [("a", "1"), ("x-envoy-retry-on", "5xx"), ("x-envoy-internal", "true")]
    )
    assert kept == [("a", "1"), ("x-envoy-internal", "true")]
    assert taken == [("x-envoy-retry-on", "5xx")]
