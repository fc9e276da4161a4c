"""Quantile estimates from bucket counts: pure functions, no state.

Envoy keeps a log-linear histogram (circllhist) and reads quantiles from it. We only keep the
fixed Prometheus-style buckets, so quantiles are estimated the way Prometheus'
`histogram_quantile` does: find the bucket holding the rank and interpolate linearly inside it.
Tracking the observed min and max lets the estimate clamp the outer buckets (P0 and P100 are exact,
and a lone sample reads back as itself instead of a bucket midpoint).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Envoy's default histogram bucket upper bounds, in the histogram's unit (milliseconds for timers).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)

# The quantiles Envoy's admin reports for every histogram, as fractions.
SUPPORTED_QUANTILES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0)


def estimate_quantile(
    bounds: Sequence[float],
    counts: Sequence[int],
    low: float,
    high: float,
    q: float,
) -> float:
    """The q-quantile (0..1) of samples bucketed as `counts` over upper `bounds`.

    `counts` is disjoint and has one more entry than `bounds` (the overflow bucket). `low` and
    `high` bound every sample (the observed min and max). NaN when there are no samples, which is
    what Envoy reports for an empty interval.
    """
    total = sum(counts)
    if total == 0:
        return math.nan
    # No special case for P0/P100: rank 0 lands at the lower edge of the first non-empty bucket
    # and rank `total` at the upper edge of the last, which the clamp turns into min and max.
    rank = min(max(q, 0.0), 1.0) * total
    seen = 0
    for index, count in enumerate(counts):
        if count == 0:
            continue
        if seen + count >= rank:
            lower = bounds[index - 1] if index > 0 else min(0.0, low)
            upper = bounds[index] if index < len(bounds) else high
            lower = max(lower, low)
            upper = max(min(upper, high), lower)
            return _tidy(lower + (upper - lower) * (rank - seen) / count)
        seen += count
    return high


def _tidy(value: float) -> float:
    """Drop float noise (580.0000000000001) that interpolation adds and no bucket can justify."""
    return float(f"{value:.12g}")


def estimate_quantiles(
    bounds: Sequence[float],
    counts: Sequence[int],
    low: float,
    high: float,
    quantiles: Sequence[float] = SUPPORTED_QUANTILES,
) -> tuple[float, ...]:
    """`estimate_quantile` for each of `quantiles`, in order."""
    return tuple(estimate_quantile(bounds, counts, low, high, q) for q in quantiles)


def cumulative(counts: Sequence[int]) -> tuple[int, ...]:
    """Running totals of disjoint bucket counts: Prometheus' `le` buckets."""
    running = 0
    out: list[int] = []
    for count in counts:
        running += count
        out.append(running)
    return tuple(out)
