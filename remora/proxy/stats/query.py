"""Which stats a /stats request asks for: Envoy's `filter`, `usedonly` and `type` parameters.

Parsed once per request into an immutable value the renderers share, so text, JSON and Prometheus
output select exactly the same stats for the same query string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidStatsQuery
from .histogram import Histogram
from .metrics import Counter, Gauge
from .store import Store

# Envoy's `type` parameter values, mapped to the stat kinds they select.
_TYPES: dict[str, frozenset[str]] = {
    "All": frozenset({"counter", "gauge", "histogram"}),
    "Counters": frozenset({"counter"}),
    "Gauges": frozenset({"gauge"}),
    "Histograms": frozenset({"histogram"}),
    "TextReadouts": frozenset(),
}


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """A stat selection: name regex (partial match, like Envoy's), used-only, kinds."""

    pattern: re.Pattern[str] | None = None
    used_only: bool = False
    kinds: frozenset[str] = _TYPES["All"]

    def selects(self, kind: str, name: str, used: bool) -> bool:
        if kind not in self.kinds:
            return False
        if self.used_only and not used:
            return False
        return self.pattern is None or self.pattern.search(name) is not None

    @classmethod
    def from_params(cls, params: Iterable[tuple[str, str]]) -> StatsQuery:
        """Build from decoded query pairs; `usedonly` counts as set when present at all."""
        pattern: re.Pattern[str] | None = None
        used_only = False
        kinds = _TYPES["All"]
        for key, value in params:
            if key == "filter" and value:
                try:
                    pattern = re.compile(value)
                except re.error as exc:
                    raise InvalidStatsQuery("filter", value, f"not a valid regex: {exc}") from exc
            elif key == "usedonly":
                used_only = value.lower() not in ("false", "0")
            elif key == "type":
                if value not in _TYPES:
                    raise InvalidStatsQuery(
                        "type", value, f"must be one of {', '.join(sorted(_TYPES))}"
                    )
                kinds = _TYPES[value]
        return cls(pattern=pattern, used_only=used_only, kinds=kinds)


@dataclass(frozen=True, slots=True)
class Selection:
    """The stats a query selected, sorted by name as Envoy lists them."""

    scalars: tuple[Counter | Gauge, ...]
    histograms: tuple[Histogram, ...]


def select(store: Store, query: StatsQuery) -> Selection:
    """Counters and gauges interleaved by name (Envoy prints them as one list), then histograms."""
    scalars: list[Counter | Gauge] = [
        c for c in store.counters() if query.selects(c.kind, c.name, c.used)
    ]
    scalars.extend(g for g in store.gauges() if query.selects(g.kind, g.name, g.used))
    scalars.sort(key=lambda stat: stat.name)
    histograms = sorted(
        (h for h in store.histograms() if query.selects(h.kind, h.name, h.used)),
        key=lambda h: h.name,
    )
    return Selection(tuple(scalars), tuple(histograms))
