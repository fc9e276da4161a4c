"""The clocks of one exchange, and what each does when it runs out.

An HTTP/1.1 connection runs one exchange at a time and folds these into its single timer with
its own (idle, header, connection age); an HTTP/2 stream runs them on a timer of its own. The
decision is the same either way, so it lives here once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from remora.proxy.response_flags import DURATION_TIMEOUT, STREAM_IDLE_TIMEOUT

if TYPE_CHECKING:
    from remora.proxy.http.config import HcmConfig
    from remora.proxy.http.exchange import Exchange
    from remora.proxy.http.hcm_stats import HcmStats


def exchange_deadline(
    hcm: HcmConfig, active: Exchange, last_activity: float, tunnel: bool
) -> tuple[float, str] | None:
    """The earliest of the exchange's deadlines (monotonic seconds) and its kind."""
    at = float("inf")
    kind = ""
    if hcm.request_timeout is not None and not active.request.complete and not active.head_sent:
        # Envoy disarms the request timeout once the response has started.
        at, kind = active.request.started_at + hcm.request_timeout, "request"
    if hcm.stream_idle_timeout is not None:
        candidate = last_activity + hcm.stream_idle_timeout
        if candidate < at:
            at, kind = candidate, "stream_idle"
    if active.route_deadline is not None and active.route_deadline < at:
        at, kind = active.route_deadline, "route"
    if active.stream_deadline is not None and active.stream_deadline < at:
        at, kind = active.stream_deadline, "upstream_duration"
    if active.max_duration is not None and not tunnel:
        candidate = active.request.started_at + active.max_duration
        if candidate < at:
            at, kind = candidate, "stream_duration"
    retry = active.retry
    if retry is not None and retry.try_deadline is not None and retry.try_deadline < at:
        at, kind = retry.try_deadline, "per_try"
    return (at, kind) if kind else None


def fire(kind: str, active: Exchange, stats: HcmStats) -> None:
    """Act on an exchange deadline of `kind` (one `exchange_deadline` returned) that passed."""
    if kind == "route":
        active.on_route_timeout()
    elif kind == "upstream_duration":
        active.on_stream_duration()
    elif kind == "stream_duration":
        stats.downstream_rq_max_duration_reached.inc()
        active.on_timeout("downstream duration timeout", DURATION_TIMEOUT)
    elif kind == "per_try":
        if active.retry is not None:
            active.retry.on_per_try_timeout()
    elif kind == "request":
        stats.downstream_rq_timeout.inc()
        active.on_timeout("request timeout", "")
    elif kind == "stream_idle":
        stats.downstream_rq_idle_timeout.inc()
        active.on_timeout("stream timeout", STREAM_IDLE_TIMEOUT)
