"""Envoy's /stats?format=json output.

Shape: `{"stats": [{"name": n, "value": v}, ..., {"histograms": {"supported_quantiles": [...],
"computed_quantiles": [{"name": n, "values": [{"interval": i, "cumulative": c}, ...]}]}}]}`.
The histograms element is present only when some histogram is selected; a quantile with no data
(an empty interval) is `null`, as Envoy writes NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .histogram import Histogram
from .quantiles import SUPPORTED_QUANTILES
from .query import StatsQuery, select
from .store import Store


def _number(value: float) -> float | int | None:
    if math.isnan(value) or math.isinf(value):
        return None
    return int(value) if value == int(value) else value


def histogram_entry(histogram: Histogram) -> dict[str, Any]:
    interval = histogram.interval().quantiles()
    total = histogram.snapshot().quantiles()
    return {
        "name": histogram.name,
        "values": [
            {"interval": _number(i), "cumulative": _number(c)}
            for i, c in zip(interval, total, strict=True)
        ],
    }


def stats_document(store: Store, query: StatsQuery) -> dict[str, Any]:
    """The JSON-ready document, for callers that embed it rather than serve it."""
    selection = select(store, query)
    stats: list[dict[str, Any]] = [
        {"name": stat.name, "value": stat.value} for stat in selection.scalars
    ]
    if selection.histograms:
        stats.append(
            {
                "histograms": {
                    "supported_quantiles": [_number(q * 100) for q in SUPPORTED_QUANTILES],
                    "computed_quantiles": [histogram_entry(h) for h in selection.histograms],
                }
            }
        )
    return {"stats": stats}


def render_json(store: Store, query: StatsQuery) -> str:
    return json.dumps(stats_document(store, query), indent=2) + "\n"
