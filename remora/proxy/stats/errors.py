"""Typed errors of the stats store, each naming the stat or parameter at fault.

Stat names are built from config (cluster names, stat prefixes), so a bad name is a config mistake
that must be reported with the name in hand rather than surfacing later as a garbled /stats line.
"""

from __future__ import annotations


class StatsError(Exception):
    """Base class of every error the stats package raises."""


class InvalidStatName(StatsError):
    """A stat name that would corrupt the admin output (empty, or containing whitespace)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid stat name {name!r}: {reason}")
        self.name = name
        self.reason = reason


class StatKindConflict(StatsError):
    """One name asked for as two kinds of stat (say a counter and a gauge).

    Envoy's renderers key output by name alone, so two kinds under one name would render as two
    contradicting lines; refusing at config time keeps the output unambiguous.
    """

    def __init__(self, name: str, existing: str, requested: str) -> None:
        super().__init__(
            f"stat {name!r} already exists as a {existing}, cannot create a {requested}"
        )
        self.name = name
        self.existing = existing
        self.requested = requested


class InvalidHistogramBounds(StatsError):
    """Histogram bucket bounds that are empty, unsorted or not finite, or differ on re-lookup."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"histogram {name!r}: {reason}")
        self.name = name
        self.reason = reason


class InvalidStatsQuery(StatsError):
    """A /stats query parameter that cannot be honoured (bad regex, unknown type or format)."""

    def __init__(self, parameter: str, value: str, reason: str) -> None:
        super().__init__(f"invalid query parameter {parameter}={value!r}: {reason}")
        self.parameter = parameter
        self.value = value
        self.reason = reason
