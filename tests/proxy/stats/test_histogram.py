from __future__ import annotations

import math

import pytest

from remora.proxy.stats.errors import InvalidHistogramBounds
from remora.proxy.stats.histogram import Histogram


def test_record_places_values_in_le_buckets() -> None:
    hist = Histogram("cluster.demo.upstream_rq_time")
    for value in (0.5, 0.7, 1, 12.5, 4000000):
        hist.record(value)
    snap = hist.snapshot()
    assert snap.count == 5
    assert snap.sum == pytest.approx(0.5 + 0.7 + 1 + 12.5 + 4000000)
    cumulative = dict(zip(snap.bounds, snap.bucket_counts(), strict=True))
    assert cumulative[0.5] == 1  # le semantics: 0.5 counts in the 0.5 bucket
    assert cumulative[1] == 3
    assert cumulative[10] == 3
    assert cumulative[25] == 4
    assert cumulative[3600000] == 4  # 4e6 is only in +Inf
    assert snap.counts[-1] == 1
    assert (snap.low, snap.high) == (0.5, 4000000)


def test_unused_histogram_snapshot() -> None:
    hist = Histogram("h")
    assert not hist.used
    snap = hist.snapshot()
    assert snap.count == 0
    assert all(math.isnan(q) for q in snap.quantiles())


def test_interval_covers_the_last_flush_period_only() -> None:
    hist = Histogram("h")
    hist.record(3)
    assert hist.interval().count == 0  # nothing flushed yet: Envoy shows nan
    hist.flush()
    assert hist.interval().count == 1
    hist.record(700)
    hist.record(800)
    assert hist.interval().count == 1  # still the closed interval
    hist.flush()
    interval = hist.interval()
    assert interval.count == 2
    assert interval.sum == 1500
    assert interval.quantiles()[-1] == 800
    assert hist.snapshot().count == 3
    hist.flush()
    assert hist.interval().count == 0
    assert all(math.isnan(q) for q in hist.interval().quantiles())


def test_quantiles_from_snapshot() -> None:
    hist = Histogram("h")
    for value in range(1, 101):
        hist.record(value)
    p = dict(
        zip((0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100), hist.snapshot().quantiles(), strict=True)
    )
    assert p[0] == 1
    assert p[100] == 100
    assert 50 <= p[50] <= 100  # bucket (50, 100]
    assert p[25] <= p[50] <= p[75] <= p[90] <= p[99] <= p[100]


@pytest.mark.parametrize(
    ("bounds", "reason"),
    [((), "empty"), ((1, 1), "strictly increasing"), ((5, 1), "strictly increasing"),
     ((1, math.inf), "finite")],
)  # fmt: skip
def test_bad_bounds_are_rejected_with_name(bounds: tuple[float, ...], reason: str) -> None:
    with pytest.raises(InvalidHistogramBounds, match=reason) as info:
        Histogram("cluster.demo.custom", bounds)
    assert info.value.name == "cluster.demo.custom"
