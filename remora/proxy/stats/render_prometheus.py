"""Envoy-style Prometheus exposition, produced by prometheus-client.

Names follow Envoy's Prometheus output: `envoy_` + the tag-extracted name with every character
outside `[a-zA-Z0-9_]` turned into `_`, and the extracted tags as labels. The text itself is
written by `prometheus_client.generate_latest` over a custom collector, so escaping and the
exposition grammar are the library's, not ours.

One deliberate difference from Envoy: prometheus-client names each counter family without a
`_total` suffix and each counter sample with one. Envoy counters that already end in `_total` (most
of them) therefore scrape under exactly Envoy's name; the others gain a `_total` suffix on the
sample, while the family (`# TYPE`) name the parser reports is still Envoy's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .formatting import format_number
from .histogram import Histogram
from .metrics import Counter, Gauge
from .query import StatsQuery, select
from .store import Store
from .tags import DEFAULT_TAG_RULES, TagRule, extract_tags

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
NAMESPACE = "envoy_"

_log = logging.getLogger(__name__)
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """Envoy's Prometheus name sanitizing: anything outside [a-zA-Z0-9_] becomes `_`."""
    return _INVALID.sub("_", name)


@dataclass(slots=True)
class _Family:
    kind: str
    help: str
    samples: list[tuple[dict[str, str], Counter | Gauge | Histogram]] = field(default_factory=list)
    label_sets: set[tuple[tuple[str, str], ...]] = field(default_factory=set)


def _family_name(kind: str, base: str) -> str:
    # prometheus-client appends `_total` to counter samples itself; strip ours so it is not doubled.
    if kind == "counter" and base.endswith("_total"):
        return base[: -len("_total")]
    return base


_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


class StoreCollector(Collector):
    """Adapts a `Store` to prometheus-client: one metric family per tag-extracted name.

    Two stats that would land on the same family with different types, or on the same family and
    label set, cannot both be exposed under Envoy's naming; the later one (in name order) falls
    back to its untagged name so nothing silently merges.
    """

    def __init__(
        self, store: Store, query: StatsQuery, rules: tuple[TagRule, ...] = DEFAULT_TAG_RULES
    ) -> None:
        self._store = store
        self._query = query
        self._rules = rules

    def collect(self) -> Iterator[Metric]:
        families: dict[str, _Family] = {}
        sample_owners: dict[str, str] = {}
        selection = select(self._store, self._query)
        for stat in (*selection.scalars, *selection.histograms):
            self._place(families, sample_owners, stat)
        for name in sorted(families):
            yield _build(name, families[name])

    def _place(
        self,
        families: dict[str, _Family],
        sample_owners: dict[str, str],
        stat: Counter | Gauge | Histogram,
    ) -> None:
        tagged = extract_tags(stat.name, self._rules)
        candidates = [(tagged.name, tagged.tags)]
        if tagged.tags:
            candidates.append((stat.name, ()))
        for base, tags in candidates:
            name = _family_name(stat.kind, NAMESPACE + sanitize(base))
            labels = {sanitize(key): value for key, value in tags}
            label_key = tuple(sorted(labels.items()))
            family = families.get(name)
            if family is None:
                samples = [name + suffix for suffix in _SAMPLE_SUFFIXES[stat.kind]]
                if any(sample in sample_owners for sample in samples):
                    continue
                sample_owners.update(dict.fromkeys(samples, name))
                family = families[name] = _Family(kind=stat.kind, help=base)
            elif family.kind != stat.kind or label_key in family.label_sets:
                continue
            family.label_sets.add(label_key)
            family.samples.append((labels, stat))
            return
        _log.warning("stat %s collides with another stat in Prometheus output; skipped", stat.name)


def _build(name: str, family: _Family) -> Metric:
    metric: Metric
    if family.kind == "histogram":
        metric = HistogramMetricFamily(name, family.help)
        for labels, stat in family.samples:
            assert isinstance(stat, Histogram)
            snap = stat.snapshot()
            buckets = [
                (format_number(bound), float(count))
                for bound, count in zip(snap.bounds, snap.bucket_counts(), strict=True)
            ]
            buckets.append(("+Inf", float(snap.count)))
            _add_histogram(metric, name, labels, buckets, snap.sum)
        return metric
    metric = (
        CounterMetricFamily(name, family.help)
        if family.kind == "counter"
        else GaugeMetricFamily(name, family.help)
    )
    suffix = "_total" if family.kind == "counter" else ""
    for labels, stat in family.samples:
        assert not isinstance(stat, Histogram)
        metric.add_sample(name + suffix, labels, float(stat.value))
    return metric


def _add_histogram(
    metric: Metric,
    name: str,
    labels: dict[str, str],
    buckets: list[tuple[str, float]],
    total: float,
) -> None:
    for bound, count in buckets:
        metric.add_sample(name + "_bucket", {**labels, "le": bound}, count)
    metric.add_sample(name + "_count", labels, buckets[-1][1])
    metric.add_sample(name + "_sum", labels, total)


def render_prometheus(store: Store, query: StatsQuery) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, query))
    return bytes(generate_latest(registry))
