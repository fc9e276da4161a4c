"""Envoy's retry rules at run time: the compiled policy and a pure decider.

Everything here is a plain function of plain values (`classify_*`, `decide`, `retry_limit`,
`backoff`, `merge_headers`), so each rule is unit-tested without sockets; the per-request shell
that applies them is remora/proxy/http/retry.py, the proto compiler `retry_policy.py`. It sits in
the route package because compiled routes carry the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from remora.proxy.http.h1_codec import Headers
from remora.proxy.http.route.matchers import HeaderMatch
from remora.proxy.http.route.table import RouteRequest

# retry_on conditions, as bits so a request's policy and its x-envoy-retry-on merge with an `or`.
RETRY_5XX = 1
GATEWAY_ERROR = 2
RESET = 4
CONNECT_FAILURE = 8
RETRIABLE_4XX = 16
REFUSED_STREAM = 32
RETRIABLE_STATUS_CODES = 64
RETRIABLE_HEADERS = 128

RETRY_ON_TOKENS: dict[str, int] = {
    "5xx": RETRY_5XX,
    "gateway-error": GATEWAY_ERROR,
    "reset": RESET,
    "connect-failure": CONNECT_FAILURE,
    "retriable-4xx": RETRIABLE_4XX,
    "refused-stream": REFUSED_STREAM,
    "retriable-status-codes": RETRIABLE_STATUS_CODES,
    "retriable-headers": RETRIABLE_HEADERS,
}
# Envoy's other conditions: known (so a config naming them is refused as unsupported, not as a
# typo), but meaningless or unimplemented here (gRPC statuses, rate limiting, HTTP/3).
ENVOY_ONLY_TOKENS = frozenset(
    {
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "reset-before-request",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)

# Why an attempt failed before it had a response. Refused: an HTTP/2 upstream never processed
# the stream (REFUSED_STREAM, or past its GOAWAY), so trying again is safe.
CONNECT_FAILED, RESET_BEFORE_RESPONSE, PER_TRY_TIMEOUT, REFUSED_BEFORE_RESPONSE = range(4)

# Decisions.
NO_RETRY, RETRY, LIMIT_EXCEEDED, OVERFLOW = range(4)

DEFAULT_BASE_INTERVAL = 0.025
RETRY_HEADER_NAMES = frozenset(
    {
        "x-envoy-retry-on",
        "x-envoy-max-retries",
        "x-envoy-retriable-status-codes",
        "x-envoy-retriable-header-names",
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One route's retry rules, compiled (remora/proxy/http/route/retry_policy.py)."""

    retry_on: int = 0
    num_retries: int = 1
    per_try_timeout: float | None = None
    base_interval: float = DEFAULT_BASE_INTERVAL
    max_interval: float = 10 * DEFAULT_BASE_INTERVAL
    retriable_status_codes: frozenset[int] = frozenset()
    retriable_headers: tuple[HeaderMatch, ...] = ()
    # previous_hosts predicate: re-pick up to `host_selection_attempts` times to avoid a host
    # already tried by this request.
    previous_hosts: bool = False
    host_selection_attempts: int = 1
    # How much request body may be held for replay; None: the listener's buffer limit.
    buffer_limit: int | None = None
    attempt_count_header: bool = False  # the virtual host's include_request_attempt_count


DEFAULT_POLICY = RetryPolicy()


def split_retry_headers(headers: Headers) -> tuple[Headers, Headers]:
    """The request's fields without the x-envoy-retry-* ones, and those ones."""
    kept: Headers = []
    taken: Headers = []
    for field in headers:
        (taken if field[0] in RETRY_HEADER_NAMES else kept).append(field)
    return kept, taken


def parse_retry_on(value: str) -> tuple[int, list[str]]:
    """The bits of a comma-separated retry_on list, and the tokens it did not recognise."""
    bits = 0
    unknown: list[str] = []
    for token in value.split(","):
        token = token.strip()
        if not token:
            continue
        bit = RETRY_ON_TOKENS.get(token)
        if bit is None:
            unknown.append(token)
        else:
            bits |= bit
    return bits, unknown


def merge_headers(policy: RetryPolicy | None, headers: Headers) -> RetryPolicy | None:
    """The policy once a trusted request's x-envoy-retry-* headers are applied, as Envoy does:
    x-envoy-retry-on adds conditions (and alone enables retries, once, with default back-off),
    x-envoy-max-retries replaces num_retries, and the retriable status codes and header names
    add to the policy's. Values that do not parse are ignored, as Envoy ignores them."""
    retry_on = 0
    max_retries: int | None = None
    codes: set[int] = set()
    names: list[HeaderMatch] = []
    for name, value in headers:
        if name == "x-envoy-retry-on":
            retry_on |= parse_retry_on(value)[0]
        elif name == "x-envoy-max-retries":
            text = value.strip()
            if text.isdigit() and text.isascii():
                max_retries = min(int(text), 2**32 - 1)
        elif name == "x-envoy-retriable-status-codes":
            for code in value.split(","):
                code = code.strip()
                if code.isdigit() and code.isascii():
                    codes.add(int(code))
        elif name == "x-envoy-retriable-header-names":
            for header in value.split(","):
                header = header.strip().lower()
                if header:
                    names.append(present_matcher(header))
    if policy is None:
        if not retry_on:
            return None  # only x-envoy-retry-on turns retries on for a route without a policy
        policy = DEFAULT_POLICY
    return replace(
        policy,
        retry_on=policy.retry_on | retry_on,
        num_retries=policy.num_retries if max_retries is None else max_retries,
        retriable_status_codes=policy.retriable_status_codes | codes,
        retriable_headers=policy.retriable_headers + tuple(names),
    )


def present_matcher(name: str) -> HeaderMatch:
    """A header matcher that matches when `name` is present (x-envoy-retriable-header-names)."""
    return HeaderMatch(name, 0, 0, True, None, 0, 0, False, False)


def classify_failure(retry_on: int, failure: int) -> bool:
    """Whether an attempt that got no response is retriable. Envoy counts a connect failure, a
    reset and a per-try timeout under 5xx and gateway-error (each would have been answered with
    a 5xx) and under reset (no response at all); connect-failure covers only the connect."""
    if retry_on & (RETRY_5XX | GATEWAY_ERROR):
        return True
    if failure == CONNECT_FAILED:
        return bool(retry_on & (CONNECT_FAILURE | RESET))
    if failure == REFUSED_BEFORE_RESPONSE:
        return bool(retry_on & (REFUSED_STREAM | RESET))
    return bool(retry_on & RESET)


def classify_response(policy: RetryPolicy, status: int, headers: Headers) -> bool:
    """Whether a response head is retriable under `policy`."""
    retry_on = policy.retry_on
    if retry_on & RETRY_5XX and status >= 500:
        return True
    if retry_on & GATEWAY_ERROR and status in (502, 503, 504):
        return True
    if retry_on & RETRIABLE_4XX and status == 409:
        return True
    if retry_on & RETRIABLE_STATUS_CODES and status in policy.retriable_status_codes:
        return True
    if retry_on & RETRIABLE_HEADERS and policy.retriable_headers:
        response = RouteRequest("", "", "", [(":status", str(status)), *headers], "")
        for matcher in policy.retriable_headers:
            if matcher.matches(response):
                return True
    return False


def retry_limit(
    max_retries: int,
    budget: tuple[float, int] | None,
    rq_active: int,
    rq_pending: int,
) -> int:
    """How many retries the cluster lets run at once: the `max_retries` threshold, or, when a
    retry budget is set (it overrides max_retries), budget_percent of active plus pending
    requests, never below min_retry_concurrency."""
    if budget is None:
        return max_retries
    percent, min_concurrency = budget
    return max(int(percent * (rq_active + rq_pending) / 100), min_concurrency)


def decide(
    retriable: bool, retries_done: int, num_retries: int, active_retries: int, limit: int
) -> int:
    """Envoy's order: not retriable, then the request's own limit, then the cluster's breaker."""
    if not retriable:
        return NO_RETRY
    if retries_done >= num_retries:
        return LIMIT_EXCEEDED
    if active_retries >= limit:
        return OVERFLOW
    return RETRY


def backoff(retry_number: int, base: float, maximum: float, draw: float) -> float:
    """Fully jittered exponential back-off: retry N waits uniformly in [0, (2^N - 1) * base),
    the range capped at `maximum`. `draw` is uniform in [0, 1)."""
    span = min(((1 << min(retry_number, 62)) - 1) * base, maximum)
    return draw * span
