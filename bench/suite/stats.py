"""Medians with min and max over repeated runs, and each peer's ratio to remora."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Summary = dict[str, dict[str, float]]

BASELINE = "remora"


def summarize(runs: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> Summary:
    out: Summary = {}
    for key in keys:
        values = [float(run[key]) for run in runs if isinstance(run.get(key), int | float)]
        if values:
            out[key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "total": sum(values),
                "n": float(len(values)),
            }
    return out


def ratios(summary: Summary, baseline: Summary | None) -> dict[str, float]:
    """peer median / remora median for every metric both have (1.0 for remora itself)."""
    if baseline is None:
        return {}
    out: dict[str, float] = {}
    for key, stats in summary.items():
        base = baseline.get(key, {}).get("median")
        if base:
            out[key] = stats["median"] / base
    return out
