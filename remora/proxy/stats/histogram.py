"""Histograms: fixed buckets recorded on the data path, read as immutable snapshots.

`record()` is the hot half: one bisect into a short tuple and a handful of attribute updates.
Everything that costs more (cumulative counts, quantiles, interval deltas) happens on snapshots,
which only the admin renderers and the periodic flush take.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

from .errors import InvalidHistogramBounds
from .quantiles import DEFAULT_BUCKETS, SUPPORTED_QUANTILES, cumulative, estimate_quantiles


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram's state at one moment (or over one flush interval).

    `counts` is disjoint, one entry per bound plus a final overflow bucket; `low`/`high` bound the
    samples (NaN when empty).
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float
    low: float
    high: float

    def bucket_counts(self) -> tuple[int, ...]:
        """Cumulative count at each bound (`le` semantics), without the implicit +Inf bucket."""
        return cumulative(self.counts)[: len(self.bounds)]

    def quantiles(self, quantiles: Sequence[float] = SUPPORTED_QUANTILES) -> tuple[float, ...]:
        """Estimated quantiles; all NaN when the snapshot holds no samples."""
        if self.count == 0:
            return tuple(math.nan for _ in quantiles)
        return estimate_quantiles(self.bounds, self.counts, self.low, self.high, quantiles)


def check_bounds(name: str, bounds: Sequence[float]) -> tuple[float, ...]:
    """Validated bucket bounds as a tuple: non-empty, finite, strictly increasing."""
    result = tuple(float(b) for b in bounds)
    if not result:
        raise InvalidHistogramBounds(name, "bucket bounds are empty")
    if not all(math.isfinite(b) for b in result):
        raise InvalidHistogramBounds(name, f"bucket bounds must be finite, got {list(bounds)}")
    if any(b >= nxt for b, nxt in pairwise(result)):
        raise InvalidHistogramBounds(
            name, f"bucket bounds must be strictly increasing, got {list(bounds)}"
        )
    return result


class Histogram:
    """A distribution of values (milliseconds for Envoy's `*_time`/`*_ms` stats).

    `flush()` closes an interval the way Envoy's periodic stats flush merges histograms: the
    interval view then shows what was recorded between the last two flushes, and the cumulative
    view always shows everything since start.
    """

    __slots__ = (
        "_interval",
        "_last_count",
        "_last_counts",
        "_last_sum",
        "bounds",
        "count",
        "counts",
        "max",
        "min",
        "name",
        "sum",
    )
    kind: ClassVar[str] = "histogram"

    def __init__(self, name: str, bounds: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.name = name
        self.bounds = check_bounds(name, bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._last_counts: tuple[int, ...] = tuple(self.counts)
        self._last_count = 0
        self._last_sum = 0.0
        self._interval: HistogramSnapshot | None = None

    def record(self, value: float) -> None:
        """Add one sample. Values must be finite; a NaN would poison the sum."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    @property
    def used(self) -> bool:
        return self.count != 0

    def merge(self, other: HistogramSnapshot) -> None:
        """Add another histogram's samples (same bounds): how `--concurrency` sums workers."""
        if other.bounds != self.bounds:
            raise InvalidHistogramBounds(self.name, "cannot merge histograms with other bounds")
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.count += other.count
        self.sum += other.sum
        if other.count:
            self.min = min(self.min, other.low)
            self.max = max(self.max, other.high)

    def snapshot(self) -> HistogramSnapshot:
        """Everything recorded since the histogram was created."""
        empty = self.count == 0
        return HistogramSnapshot(
            bounds=self.bounds,
            counts=tuple(self.counts),
            count=self.count,
            sum=self.sum,
            low=math.nan if empty else self.min,
            high=math.nan if empty else self.max,
        )

    def interval(self) -> HistogramSnapshot:
        """What was recorded between the last two flushes (empty before the first flush)."""
        if self._interval is None:
            return HistogramSnapshot(
                self.bounds, tuple(0 for _ in self.counts), 0, 0.0, math.nan, math.nan
            )
        return self._interval

    def flush(self) -> None:
        """Close the current interval. Called by `Store.flush()` on the stats flush timer."""
        counts = tuple(self.counts)
        delta = tuple(now - before for now, before in zip(counts, self._last_counts, strict=True))
        count = self.count - self._last_count
        empty = count == 0
        # Per-interval extremes are not tracked (that would cost the hot path two more stores);
        # the all-time extremes still bound every interval sample, so the clamp stays valid.
        self._interval = HistogramSnapshot(
            bounds=self.bounds,
            counts=delta,
            count=count,
            sum=self.sum - self._last_sum,
            low=math.nan if empty else self.min,
            high=math.nan if empty else self.max,
        )
        self._last_counts = counts
        self._last_count = self.count
        self._last_sum = self.sum

    def __repr__(self) -> str:
        return f"Histogram({self.name!r}, count={self.count}, sum={self.sum})"
