"""Envoy's retry policy at run time: a pure decider, and the per-request state that applies it.

The decider (`classify_*`, `retry_allowed`, `backoff`, `merge_headers`) is plain functions of
plain values, so every rule is unit-tested without sockets. `RetryState` is the thin shell: it
records the request body while it may still be replayed, holds the cluster's retry slot, and owns
the two timers a retried request needs (per-try timeout, back-off). The exchange asks it at each
outcome point whether to give up or to try again; a request whose route has no policy (and no
retry headers) never creates one, so it pays a single attribute test.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from remora.proxy import response_flags as flags
from remora.proxy.http.h1_codec import Headers, RawHeaders, decode_headers
from remora.proxy.http.route.matchers import HeaderMatch
from remora.proxy.http.route.table import RouteRequest

if TYPE_CHECKING:
    from collections.abc import Callable

    from remora.proxy.http.body import BodyPipe
    from remora.proxy.http.exchange import Exchange
    from remora.proxy.upstream.cluster import Cluster, Host

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

# Why an attempt failed before it had a response.
CONNECT_FAILED, RESET_BEFORE_RESPONSE, PER_TRY_TIMEOUT = range(3)

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
_rng = random.Random()


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
    reset and a per-try timeout under 5xx and gateway-error (each would have answered 5xx) and
    under reset, except that `reset` does not include a failed connect; connect-failure
    covers only the connect."""
    if retry_on & (RETRY_5XX | GATEWAY_ERROR):
        return True
    if failure == CONNECT_FAILED:
        return bool(retry_on & (CONNECT_FAILURE | RESET))
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


class RetryState:
    """The retry shell of one exchange."""

    __slots__ = (
        "_backoff",
        "_chunks",
        "_per_try",
        "_rng",
        "buffered",
        "cluster",
        "exchange",
        "flags_at_attempt",
        "hash_key",
        "holds_slot",
        "limit",
        "overflowed",
        "policy",
        "retries",
        "sink",
        "tried",
    )

    def __init__(
        self,
        exchange: Exchange,
        policy: RetryPolicy,
        cluster: Cluster,
        hash_key: int | None,
        buffer_limit: int,
        rng: random.Random | None = None,
    ) -> None:
        self.exchange = exchange
        self.policy = policy
        self.cluster = cluster
        self.hash_key = hash_key
        self.limit = policy.buffer_limit if policy.buffer_limit is not None else buffer_limit
        self._rng = _rng if rng is None else rng
        self.retries = 0
        self.tried: list[Host] = []
        self._chunks: list[bytes] = []
        self.buffered = 0
        self.overflowed = False  # more body than `limit`: replay impossible, no more retries
        self.sink: Callable[[bytes], None] | None = None
        self.holds_slot = False
        self.flags_at_attempt = ""
        self._per_try: asyncio.TimerHandle | None = None
        self._backoff: asyncio.TimerHandle | None = None

    # -- attempts --------------------------------------------------------------------------
    def attempt_started(self, host: Host) -> None:
        self.tried.append(host)
        self.flags_at_attempt = self.exchange.response_flags
        timeout = self.policy.per_try_timeout
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._per_try = loop.call_later(timeout, self._on_per_try_timeout)

    def request_headers(self, headers: Headers) -> None:
        if self.policy.attempt_count_header:
            headers.append(("x-envoy-attempt-count", str(self.retries + 1)))

    def attach_body(
        self, body: BodyPipe, sink: Callable[[bytes], None], on_end: Callable[[], None]
    ) -> None:
        """Replay what an earlier attempt sent, then pass the rest through, keeping a copy."""
        self.sink = sink
        for chunk in self._chunks:
            sink(chunk)
        body.attach(self._record, on_end)

    def _record(self, data: bytes) -> None:
        if not self.overflowed:
            self.buffered += len(data)
            if self.buffered > self.limit:
                self.overflowed = True
                self._chunks = []
            else:
                self._chunks.append(data)
        if self.sink is not None:
            self.sink(data)

    # -- outcomes --------------------------------------------------------------------------
    def on_response(self, status: int, raw: RawHeaders) -> bool:
        """A response head arrived, not yet forwarded: True if a retry replaces it."""
        self._cancel_per_try()
        policy = self.policy
        headers: Headers = (
            decode_headers(raw) if policy.retry_on & RETRIABLE_HEADERS and raw else []
        )
        retriable = classify_response(policy, status, headers)
        if not retriable and self.retries:
            self.cluster.stats.upstream_rq_retry_success.inc()
        return self._maybe_retry(retriable)

    def on_failure(self, failure: int) -> bool:
        """An attempt failed before any response: True if it is retried."""
        self._cancel_per_try()
        return self._maybe_retry(classify_failure(self.policy.retry_on, failure))

    def _maybe_retry(self, retriable: bool) -> bool:
        self._release_slot()
        if not retriable or self.overflowed:
            return False
        cluster = self.cluster
        config = cluster.config
        stats = cluster.stats
        limit = retry_limit(
            config.max_retries,
            config.retry_budget,
            stats.upstream_rq_active.value,
            cluster.pending_requests,
        )
        decision = decide(
            True, self.retries, self.policy.num_retries, cluster.retries_active, limit
        )
        exchange = self.exchange
        if decision == LIMIT_EXCEEDED:
            stats.upstream_rq_retry_limit_exceeded.inc()
            exchange._add_flag(flags.UPSTREAM_RETRY_LIMIT_EXCEEDED)
            return False
        if decision == OVERFLOW:
            stats.upstream_rq_retry_overflow.inc()
            exchange._add_flag(flags.UPSTREAM_OVERFLOW)
            return False
        self.retries += 1
        self.holds_slot = True
        cluster.retries_active += 1
        stats.upstream_rq_retry.inc()
        stats.upstream_rq_retry_backoff_exponential.inc()
        # What the abandoned attempt added (UF, UC, ...) is not the request's outcome.
        exchange.response_flags = self.flags_at_attempt
        exchange.end_attempt()
        policy = self.policy
        delay = backoff(self.retries, policy.base_interval, policy.max_interval, self._rng.random())
        self._backoff = asyncio.get_running_loop().call_later(delay, self._retry)
        return True

    def _retry(self) -> None:
        self._backoff = None
        exchange = self.exchange
        if exchange.done:
            return
        exchange.retry_attempt(self.pick())

    def pick(self) -> Host | None:
        """The previous_hosts predicate: re-pick while the host was tried, up to the limit."""
        cluster = self.cluster
        host = cluster.pick(self.hash_key)
        if self.policy.previous_hosts:
            attempts = self.policy.host_selection_attempts
            while host is not None and host in self.tried and attempts > 0:
                host = cluster.pick(self.hash_key)
                attempts -= 1
        return host

    def _on_per_try_timeout(self) -> None:
        self._per_try = None
        exchange = self.exchange
        if exchange.done or exchange.head_sent:
            return
        self.cluster.stats.upstream_rq_per_try_timeout.inc()
        host = exchange.host
        if host is not None:
            host.rq_timeout += 1
            host.rq_error += 1
        exchange._reset_upstream()
        if self.on_failure(PER_TRY_TIMEOUT):
            return
        exchange.upstream_code = 504
        exchange._abandon(
            flags.UPSTREAM_REQUEST_TIMEOUT, 504, "upstream request timeout", close=False
        )

    # -- teardown --------------------------------------------------------------------------
    def _cancel_per_try(self) -> None:
        if self._per_try is not None:
            self._per_try.cancel()
            self._per_try = None

    def _release_slot(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.cluster.retries_active -= 1

    def close(self) -> None:
        """The exchange finished: stop the timers and give the retry slot back."""
        self._cancel_per_try()
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        self._release_slot()
        self._chunks = []
        self.sink = None
