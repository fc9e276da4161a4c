from __future__ import annotations

import math

import pytest

from remora.proxy.stats.quantiles import (
    DEFAULT_BUCKETS,
    SUPPORTED_QUANTILES,
    cumulative,
    estimate_quantile,
    estimate_quantiles,
)


def test_envoy_default_buckets_and_quantiles() -> None:
    assert DEFAULT_BUCKETS == (
        0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
        300000, 600000, 1800000, 3600000,
    )  # fmt: skip
    assert [q * 100 for q in SUPPORTED_QUANTILES] == [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]


def test_empty_is_nan() -> None:
    counts = [0] * (len(DEFAULT_BUCKETS) + 1)
    assert math.isnan(estimate_quantile(DEFAULT_BUCKETS, counts, math.nan, math.nan, 0.5))


def test_interpolates_inside_bucket() -> None:
    bounds = (10.0, 20.0)
    counts = [0, 4, 0]  # four samples in (10, 20], observed range 10..20
    assert estimate_quantile(bounds, counts, 10.0, 20.0, 0.5) == 15.0
    assert estimate_quantile(bounds, counts, 10.0, 20.0, 0.25) == 12.5


def test_extremes_are_min_and_max() -> None:
    bounds = (10.0, 20.0)
    counts = [1, 1, 1]  # 3 in (0,10], 15 in (10,20], 70 overflow
    assert estimate_quantile(bounds, counts, 3.0, 70.0, 0.0) == 3.0
    assert estimate_quantile(bounds, counts, 3.0, 70.0, 1.0) == 70.0


def test_single_sample_reads_back_exactly() -> None:
    counts = [0] * (len(DEFAULT_BUCKETS) + 1)
    counts[4] = 1  # 12.5 lands in (10, 25]
    values = estimate_quantiles(DEFAULT_BUCKETS, counts, 12.5, 12.5)
    assert values == tuple(12.5 for _ in SUPPORTED_QUANTILES)


@pytest.mark.parametrize("q", [0.25, 0.5, 0.9, 0.99])
def test_estimate_error_bounded_by_bucket_width(q: float) -> None:
    samples = [i * 0.37 for i in range(1, 2001)]  # 0.37 .. 740
    bounds = DEFAULT_BUCKETS
    counts = [0] * (len(bounds) + 1)
    for value in samples:
        counts[sum(1 for b in bounds if b < value)] += 1
    exact = sorted(samples)[max(0, math.ceil(q * len(samples)) - 1)]
    estimate = estimate_quantile(bounds, counts, min(samples), max(samples), q)
    index = sum(1 for b in bounds if b < exact)
    lower = bounds[index - 1] if index else 0.0
    upper = bounds[index] if index < len(bounds) else max(samples)
    assert lower <= estimate <= upper
    # uniform data inside a bucket: linear interpolation is close to the true quantile
    assert abs(estimate - exact) <= 0.01 * (upper - lower) + 0.37


def test_cumulative() -> None:
    assert cumulative([1, 0, 2, 3]) == (1, 1, 3, 6)
