"""Counters and gauges: the objects the data path holds and bumps.

The data path resolves each stat once, at config time, and keeps the object. After that an
increment is one attribute update on a `__slots__` instance: no lock (the proxy runs on one event
loop thread), no name lookup, no allocation. That is why these classes are deliberately dumb.
"""

from __future__ import annotations

from typing import ClassVar


class Counter:
    """A monotonically increasing count (Envoy's Counter).

    `used` is derived from the value instead of a flag so `inc()` stays a single store; the only
    difference from Envoy is that a counter only ever bumped by zero reads as unused.
    """

    __slots__ = ("name", "value")
    kind: ClassVar[str] = "counter"

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    @property
    def used(self) -> bool:
        return self.value != 0

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, value={self.value})"


class Gauge:
    """A value that goes up and down (Envoy's Gauge), such as active connections.

    A gauge back at zero after traffic is still "used" in Envoy's sense, so unlike `Counter` this
    keeps an explicit flag; gauges move far less often than request counters.
    """

    __slots__ = ("name", "used", "value")
    kind: ClassVar[str] = "gauge"

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        self.used = False

    def inc(self, amount: int = 1) -> None:
        self.value += amount
        self.used = True

    def dec(self, amount: int = 1) -> None:
        self.value -= amount
        self.used = True

    def set(self, value: int) -> None:
        self.value = value
        self.used = True

    def __repr__(self) -> str:
        return f"Gauge({self.name!r}, value={self.value})"
