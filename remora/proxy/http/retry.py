"""The retry shell of one exchange: it applies the pure rules of route/retry_rules.py.

It records the request body while it may still be replayed, holds the cluster's retry slot, and
owns the two timers a retried request needs (per-try timeout, back-off). The exchange asks it at
each outcome point whether to give up or to try again; a request whose route has no policy (and
no trusted retry headers) never creates one, so it pays a single attribute test.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from remora.proxy import response_flags as flags
from remora.proxy.http.h1_codec import Headers, RawHeaders, decode_headers
from remora.proxy.http.route.retry_rules import (
    LIMIT_EXCEEDED,
    OVERFLOW,
    PER_TRY_TIMEOUT,
    RETRIABLE_HEADERS,
    RetryPolicy,
    backoff,
    classify_failure,
    classify_response,
    decide,
    retry_limit,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from remora.proxy.http.body import BodyPipe
    from remora.proxy.http.exchange import Exchange
    from remora.proxy.upstream.cluster import Cluster, Host

_rng = random.Random()
_KEY_MASK = (1 << 64) - 1
_KEY_STEP = 0x9E3779B97F4A7C15  # odd, so successive steps visit every 64-bit key


class RetryState:
    """The retry shell of one exchange."""

    __slots__ = (
        "_backoff",
        "_chunks",
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
        "started",
        "tried",
        "try_deadline",
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
        self.started = False  # bytes of a response (a forwarded 1xx) reached the client
        self.sink: Callable[[bytes], None] | None = None
        self.holds_slot = False
        self.flags_at_attempt = ""
        # When the current try times out (monotonic seconds), watched by the connection's one lazy
        # timer as the route timeout is: a try costs a float, not a timer of its own.
        self.try_deadline: float | None = None
        self._backoff: asyncio.TimerHandle | None = None

    # -- attempts --------------------------------------------------------------------------
    def attempt_started(self, host: Host, now: float) -> None:
        self.tried.append(host)
        exchange = self.exchange
        self.flags_at_attempt = exchange.response_flags
        timeout = self.policy.per_try_timeout
        if timeout is not None:
            self.try_deadline = deadline = now + timeout
            exchange.downstream.deadline_added(deadline)

    def request_headers(self, headers: Headers) -> None:
        if self.policy.attempt_count_header:
            # The proxy's count replaces one a client sent, as Envoy's does.
            headers[:] = [field for field in headers if field[0] != "x-envoy-attempt-count"]
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

    def response_started(self) -> None:
        """An interim response went to the client: what follows it must be this try's."""
        self.started = True

    # -- outcomes --------------------------------------------------------------------------
    def on_response(self, status: int, raw: RawHeaders) -> bool:
        """A response head arrived, not yet forwarded: True if a retry replaces it."""
        self._cancel_per_try()
        policy = self.policy
        headers: Headers = (
            decode_headers(raw) if policy.retry_on & RETRIABLE_HEADERS and raw else []
        )
        return self._maybe_retry(classify_response(policy, status, headers))

    def on_failure(self, failure: int) -> bool:
        """An attempt failed before any response: True if it is retried."""
        self._cancel_per_try()
        return self._maybe_retry(classify_failure(self.policy.retry_on, failure))

    def _maybe_retry(self, retriable: bool) -> bool:
        if self.holds_slot and not retriable:
            # As Envoy infers it: the try a retry started ended in nothing worth retrying.
            self.cluster.stats.upstream_rq_retry_success.inc()
        self._release_slot()
        if not retriable or self.overflowed or self.started:
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
        """The previous_hosts predicate: re-pick while the host was tried, up to the limit.

        A hashing balancer gives one key one host, so each re-pick moves the key by a fixed odd
        step: a different point of the ring or table, as Envoy steps its ring for a re-pick."""
        cluster = self.cluster
        key = self.hash_key
        host = cluster.pick(key)
        if self.policy.previous_hosts:
            attempts = self.policy.host_selection_attempts
            while host is not None and host in self.tried and attempts > 0:
                if key is not None:
                    key = (key + _KEY_STEP) & _KEY_MASK
                host = cluster.pick(key)
                attempts -= 1
        return host

    def on_per_try_timeout(self) -> None:
        self.try_deadline = None
        exchange = self.exchange
        if exchange.done or exchange.head_sent:
            return
        self.cluster.stats.upstream_rq_per_try_timeout.inc()
        host = exchange.host
        if host is not None:
            host.rq_timeout += 1
            host.rq_error += 1
            if host.outlier is not None:  # a stalled host is an outlier too
                host.outlier.on_local_failure(True)
        exchange._reset_upstream()
        if self.on_failure(PER_TRY_TIMEOUT):
            return
        exchange.upstream_code = 504
        exchange._abandon(
            flags.UPSTREAM_REQUEST_TIMEOUT, 504, "upstream request timeout", close=False
        )

    # -- teardown --------------------------------------------------------------------------
    def _cancel_per_try(self) -> None:
        self.try_deadline = None  # the connection's timer finds nothing due and moves on

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
