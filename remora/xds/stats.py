"""Control-plane counters, exposed in the Prometheus text format for `/metrics`.

The text is written by prometheus-client, so escaping and the exposition grammar are the
library's. Label values come from the type URLs clients send, so a type remora does not serve is
counted under `type="other"`: a client can neither inject text nor grow the number of series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from remora.xds import types

OTHER = "other"
_HELP = {"nack_requests": "Requests carrying error_detail (stale ones included)"}
_LABELS = {url: url.rpartition(".")[2] for url in types.MESSAGES}


def type_label(type_url: str) -> str:
    """The `type` label of a request or response: a served type's short name, else `other`."""
    return _LABELS.get(type_url, OTHER)


class ControlPlaneStats:
    def __init__(self) -> None:
        self.counters: Counter[tuple[str, str]] = Counter()  # (metric, type label)
        self.streams_active = 0
        self.snapshots_applied = 0
        self.source_errors = 0

    def inc(self, metric: str, type_url: str = "", amount: int = 1) -> None:
        self.counters[(metric, type_label(type_url))] += amount

    def render(self, nacks_total: int) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, nacks_total))
        return generate_latest(registry).decode()


class _Collector(Collector):
    def __init__(self, stats: ControlPlaneStats, nacks_total: int) -> None:
        self.stats = stats
        self.nacks_total = nacks_total

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield GaugeMetricFamily("remora_xds_streams_active", "Open xDS streams.",
                                value=stats.streams_active)  # fmt: skip
        yield CounterMetricFamily("remora_xds_snapshots_applied", "Source loads that changed "
                                  "a snapshot.", value=stats.snapshots_applied)  # fmt: skip
        yield CounterMetricFamily("remora_xds_source_errors", "Source loads rejected.",
                                  value=stats.source_errors)  # fmt: skip
        yield CounterMetricFamily("remora_xds_nacks", "NACKs received.", value=self.nacks_total)
        families: dict[str, CounterMetricFamily] = {}
        for (metric, label), value in sorted(stats.counters.items()):
            name = f"remora_xds_{metric}"
            family = families.get(name)
            if family is None:
                help_text = _HELP.get(metric, metric.replace("_", " ")) + " by resource type."
                family = families[name] = CounterMetricFamily(name, help_text, labels=["type"])
            family.add_metric([label], value)
        yield from families.values()
