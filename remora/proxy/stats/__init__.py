"""Envoy-named stats for the proxy: a store the data path bumps and the admin server renders.

The data path resolves `store.counter("cluster.demo.upstream_rq_total")` once at config time and
calls `.inc()` per request; renderers (`render_text`, `render_json`, and `render_prometheus`,
imported only when /stats/prometheus is first asked for: prometheus-client costs 50 ms of start-up)
read the store on demand in Envoy's /stats, /stats?format=json and /stats/prometheus formats.
"""

from __future__ import annotations

from .errors import (
    InvalidHistogramBounds,
    InvalidStatName,
    InvalidStatsQuery,
    StatKindConflict,
    StatsError,
)
from .histogram import Histogram, HistogramSnapshot
from .metrics import Counter, Gauge
from .quantiles import DEFAULT_BUCKETS, SUPPORTED_QUANTILES
from .query import StatsQuery
from .render_json import render_json
from .render_text import render_text
from .store import Scope, Store
from .tags import TaggedName, extract_tags

__all__ = [
    "DEFAULT_BUCKETS",
    "SUPPORTED_QUANTILES",
    "Counter",
    "Gauge",
    "Histogram",
    "HistogramSnapshot",
    "InvalidHistogramBounds",
    "InvalidStatName",
    "InvalidStatsQuery",
    "Scope",
    "StatKindConflict",
    "StatsError",
    "StatsQuery",
    "Store",
    "TaggedName",
    "extract_tags",
    "render_json",
    "render_text",
]
