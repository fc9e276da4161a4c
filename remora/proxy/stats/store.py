"""The stats store: one namespace of Envoy-named counters, gauges and histograms.

Lookups here are config-time work (a dict probe, a name check); the data path keeps the returned
objects. Lookup is idempotent so a config reload that rebuilds its runtime objects picks up the
same counters and keeps counting, as Envoy's stats survive a listener or cluster update.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .errors import InvalidHistogramBounds, InvalidStatName, StatKindConflict
from .histogram import Histogram, check_bounds
from .metrics import Counter, Gauge
from .quantiles import DEFAULT_BUCKETS


def check_name(name: str) -> str:
    """The name itself, or `InvalidStatName` if it would break the `name: value` text format."""
    if not isinstance(name, str) or not name:
        raise InvalidStatName(str(name), "stat names must be non-empty strings")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise InvalidStatName(name, "stat names must not contain whitespace or control characters")
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise InvalidStatName(name, "stat names must not have empty dot-separated segments")
    return name


class Store:
    """All stats of one proxy process, keyed by full Envoy name."""

    __slots__ = ("_counters", "_gauges", "_histograms")

    def __init__(self) -> None:
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}

    def counter(self, name: str) -> Counter:
        found = self._counters.get(name)
        if found is None:
            self._claim(name, Counter.kind)
            found = self._counters[name] = Counter(name)
        return found

    def gauge(self, name: str) -> Gauge:
        found = self._gauges.get(name)
        if found is None:
            self._claim(name, Gauge.kind)
            found = self._gauges[name] = Gauge(name)
        return found

    def histogram(self, name: str, bounds: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        """The histogram `name`; `bounds` must match if it already exists (Envoy keys buckets by
        stat name through `histogram_bucket_settings`, so one name never has two layouts)."""
        found = self._histograms.get(name)
        if found is None:
            self._claim(name, Histogram.kind)
            found = self._histograms[name] = Histogram(name, bounds)
        elif check_bounds(name, bounds) != found.bounds:
            raise InvalidHistogramBounds(
                name, f"already exists with bounds {list(found.bounds)}, asked for {list(bounds)}"
            )
        return found

    def scope(self, prefix: str) -> Scope:
        """A view that prepends `prefix` (e.g. `cluster.demo.`) to every name it is asked for."""
        return Scope(self, prefix)

    def counters(self) -> Iterator[Counter]:
        return iter(list(self._counters.values()))

    def gauges(self) -> Iterator[Gauge]:
        return iter(list(self._gauges.values()))

    def histograms(self) -> Iterator[Histogram]:
        return iter(list(self._histograms.values()))

    def flush(self) -> None:
        """Close the histogram interval, as Envoy's `stats_flush_interval` timer does."""
        for histogram in self._histograms.values():
            histogram.flush()

    def __len__(self) -> int:
        return len(self._counters) + len(self._gauges) + len(self._histograms)

    def _claim(self, name: str, kind: str) -> None:
        check_name(name)
        for other_kind, table in (
            (Counter.kind, self._counters),
            (Gauge.kind, self._gauges),
            (Histogram.kind, self._histograms),
        ):
            if other_kind != kind and name in table:
                raise StatKindConflict(name, other_kind, kind)


class Scope:
    """A name prefix over a store, so a component builds its stats without string plumbing."""

    __slots__ = ("prefix", "store")

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."

    def counter(self, name: str) -> Counter:
        return self.store.counter(self.prefix + name)

    def gauge(self, name: str) -> Gauge:
        return self.store.gauge(self.prefix + name)

    def histogram(self, name: str, bounds: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        return self.store.histogram(self.prefix + name, bounds)

    def scope(self, prefix: str) -> Scope:
        return Scope(self.store, self.prefix + prefix)
