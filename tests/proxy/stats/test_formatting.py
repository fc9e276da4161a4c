from __future__ import annotations

import math

import pytest

from remora.proxy.stats.formatting import format_number


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.5, "0.5"), (99.9, "99.9"), (math.nan, "nan"), (3600000.0, "3600000"),
     (1.025, "1.025"), (-2.0, "-2"), (math.inf, "inf")],
)  # fmt: skip
def test_envoy_number_spelling(value: float, text: str) -> None:
    assert format_number(value) == text
