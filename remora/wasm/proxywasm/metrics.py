"""Metrics a filter defines, by id, over whatever stats the host keeps.

The ABI's rules: a counter only grows (a negative increment is BAD_ARGUMENT), a gauge is set or
moved either way, a histogram records values. Defining the same name twice returns the same id,
so a VM that restarts, or a second VM of the same filter, keeps adding to one metric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from remora.wasm.proxywasm.abi import MetricType, Status

MAX_METRICS = 10_000


class MetricBackend(Protocol):
    def add(self, delta: int) -> None: ...
    def set(self, value: int) -> None: ...
    def record(self, value: int) -> None: ...
    def value(self) -> int: ...


class MemoryMetric:
    """The backend when the host keeps no stats store (tests, `remora wasm` tools)."""

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.current = 0
        self.samples: list[int] = []

    def add(self, delta: int) -> None:
        self.current += delta

    def set(self, value: int) -> None:
        self.current = value

    def record(self, value: int) -> None:
        self.samples.append(value)
        del self.samples[:-1000]

    def value(self) -> int:
        return self.current


MetricFactory = Callable[[int, str], MetricBackend]


def memory_metrics(kind: int, _name: str) -> MetricBackend:
    return MemoryMetric(kind)


class MetricTable:
    def __init__(self, factory: MetricFactory = memory_metrics) -> None:
        self._factory = factory
        self._ids: dict[tuple[int, str], int] = {}
        self._metrics: dict[int, tuple[int, MetricBackend]] = {}

    def define(self, kind: int, name: str) -> int | None:
        key = (kind, name)
        metric_id = self._ids.get(key)
        if metric_id is not None:
            return metric_id
        if len(self._metrics) >= MAX_METRICS or not name:
            return None
        try:
            backend = self._factory(kind, name)
        except ValueError:
            return None  # a name the stats store refuses, or one already of another kind
        # Ids encode the kind in the low bits, as other hosts do, so a stale id of the wrong
        # kind is NOT_FOUND rather than silently another metric.
        metric_id = (len(self._metrics) + 1) << 2 | kind
        self._ids[key] = metric_id
        self._metrics[metric_id] = (kind, backend)
        return metric_id

    def record(self, metric_id: int, value: int) -> int:
        found = self._metrics.get(metric_id)
        if found is None:
            return Status.NOT_FOUND
        kind, backend = found
        if kind == MetricType.HISTOGRAM:
            backend.record(value)
        elif kind == MetricType.GAUGE:
            backend.set(value)
        else:  # a counter set to a value moves up to it; it never goes down
            current = backend.value()
            if value > current:
                backend.add(value - current)
        return Status.OK

    def increment(self, metric_id: int, delta: int) -> int:
        found = self._metrics.get(metric_id)
        if found is None:
            return Status.NOT_FOUND
        kind, backend = found
        if kind == MetricType.HISTOGRAM or (kind == MetricType.COUNTER and delta < 0):
            return Status.BAD_ARGUMENT
        backend.add(delta)
        return Status.OK

    def get(self, metric_id: int) -> tuple[int, int]:
        found = self._metrics.get(metric_id)
        if found is None:
            return Status.NOT_FOUND, 0
        kind, backend = found
        if kind == MetricType.HISTOGRAM:
            return Status.BAD_ARGUMENT, 0
        return Status.OK, backend.value()
