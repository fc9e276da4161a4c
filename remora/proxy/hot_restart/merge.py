"""Carrying the parent's counters into the child's store.

Counters carry over, as in Envoy: a counter is "how many since the service started", and a hot
restart does not start a new service. Each `Stats` message holds the parent's absolute values, so
the child adds only what grew since the last one; the parent's requests finished while it drains
are counted when its next (and its final) message arrives.

Gauges do not: they stay the child's own. Envoy imports most gauges while the parent lives and
subtracts them when it goes, but it knows per gauge which ones must never be summed (server state,
cluster membership, health). remora's gauges carry no such mark, and a summed membership or
`server.live` gauge would be wrong for the whole drain, so a gauge here always describes this
process. The parent's open connections show in its log and in `Draining.open_connections`.
"""

from __future__ import annotations

from collections.abc import Mapping

from remora.proxy.stats import StatsError, Store


class CounterImport:
    """What of the parent's counters is already added to this process's store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._imported: dict[str, int] = {}

    def apply(self, counters: Mapping[str, int]) -> int:
        """Add the growth since the last snapshot; returns how much was added in all."""
        added = 0
        for name, value in counters.items():
            delta = value - self._imported.get(name, 0)
            if delta <= 0:  # a parent's counter never shrinks; ignore a reordered snapshot
                continue
            try:
                counter = self._store.counter(name)
            except StatsError:  # the child's config made the name a gauge: it is not that counter
                continue
            counter.inc(delta)
            self._imported[name] = value
            added += delta
        return added


def snapshot(store: Store) -> dict[str, int]:
    """The counters worth sending (Envoy's text /stats leaves unused ones out the same way)."""
    return {counter.name: counter.value for counter in store.counters() if counter.used}
