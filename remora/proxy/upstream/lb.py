"""Weighted round robin, random choice, and the locality-weighted form of either.

Envoy's ROUND_ROBIN is plain rotation when every weight is equal and an earliest-deadline-first
schedule otherwise: each item's next turn is due `1/weight` after its last, so the cost of a
pick is a heap operation whatever the weights (an endpoint weight of 10,000,000 is as cheap as
1, where a precomputed rotation would need one slot per unit of weight). Ties go to the earlier
item, so 2:1 weights give a, a, b and equal ones a, b, a, b.

With `common_lb_config.locality_weighted_lb_config` a cluster first picks a locality by its
`load_balancing_weight` (the same schedule over localities), then a host inside it; a locality
with weight 0 or no hosts is never picked, as in Envoy.

Every balancer takes `pick(hash_key)`; only the consistent-hash ones read the key.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Balancer(Protocol[T_co]):
    def __len__(self) -> int: ...

    def pick(self, hash_key: int | None = None) -> T_co | None: ...


class WeightedRoundRobin(Generic[T]):
    __slots__ = ("_heap", "_items", "_next", "_step")

    def __init__(self, items: Sequence[T], weights: Sequence[int]) -> None:
        pairs = [(item, weight) for item, weight in zip(items, weights, strict=True) if weight > 0]
        self._items = [item for item, _weight in pairs]
        self._next = 0
        self._heap: list[tuple[float, int]] | None = None
        self._step: list[float] = []
        if len({weight for _item, weight in pairs}) > 1:
            self._step = [1.0 / weight for _item, weight in pairs]
            self._heap = [(step, i) for i, step in enumerate(self._step)]
            heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._items)

    def pick(self, hash_key: int | None = None) -> T | None:
        items = self._items
        if not items:
            return None
        heap = self._heap
        if heap is None:
            index = self._next
            self._next = index + 1 if index + 1 < len(items) else 0
            return items[index]
        deadline, index = heap[0]
        heapq.heapreplace(heap, (deadline + self._step[index], index))
        return items[index]


class Random(Generic[T]):
    """Envoy's RANDOM: any host, uniformly; like Envoy's, it does not read the weights."""

    __slots__ = ("_items", "_random")

    def __init__(self, items: Sequence[T], rng: random.Random | None = None) -> None:
        self._items = list(items)
        self._random = (rng or random.Random()).random

    def __len__(self) -> int:
        return len(self._items)

    def pick(self, hash_key: int | None = None) -> T | None:
        items = self._items
        return items[int(self._random() * len(items))] if items else None


class LocalityWeighted(Generic[T]):
    """A locality by its weight, then a host within it by the cluster's own policy."""

    __slots__ = ("_localities",)

    def __init__(
        self,
        localities: Sequence[tuple[int, Sequence[T], Sequence[int]]],
        inner: Callable[[Sequence[T], Sequence[int]], Balancer[T]] = WeightedRoundRobin,
    ) -> None:
        usable = [
            (weight, inner(hosts, host_weights))
            for weight, hosts, host_weights in localities
            if weight > 0 and any(w > 0 for w in host_weights)
        ]
        self._localities: WeightedRoundRobin[Balancer[T]] = WeightedRoundRobin(
            [balancer for _weight, balancer in usable], [weight for weight, _ in usable]
        )

    def __len__(self) -> int:
        return len(self._localities)

    def pick(self, hash_key: int | None = None) -> T | None:
        inner = self._localities.pick()
        return inner.pick() if inner is not None else None
