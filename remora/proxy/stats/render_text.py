"""Envoy's plain-text /stats output.

One `name: value` line per counter and gauge in name order, then one line per histogram:
`name: P0(interval,cumulative) P25(...) ... P100(...)`, or `name: No recorded values` for a
histogram never recorded into. Operators' scripts grep this format, so it is reproduced as is.
"""

from __future__ import annotations

from .formatting import format_number
from .histogram import Histogram
from .quantiles import SUPPORTED_QUANTILES
from .query import StatsQuery, select
from .store import Store

_LABELS = tuple(f"P{format_number(q * 100)}" for q in SUPPORTED_QUANTILES)


def quantile_summary(histogram: Histogram) -> str:
    """The `P0(i,c) P25(i,c) ...` summary of one histogram, or Envoy's no-values marker."""
    if not histogram.used:
        return "No recorded values"
    interval = histogram.interval().quantiles()
    total = histogram.snapshot().quantiles()
    return " ".join(
        f"{label}({format_number(i)},{format_number(c)})"
        for label, i, c in zip(_LABELS, interval, total, strict=True)
    )


def render_text(store: Store, query: StatsQuery) -> str:
    selection = select(store, query)
    lines = [f"{stat.name}: {stat.value}" for stat in selection.scalars]
    lines.extend(f"{h.name}: {quantile_summary(h)}" for h in selection.histograms)
    return "".join(line + "\n" for line in lines)
