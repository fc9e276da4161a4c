"""Envoy's LEAST_REQUEST: send the next request where the fewest are in flight.

With equal weights it is "power of two choices": sample `choice_count` hosts at random (two by
default) and take the one with the fewest active requests. Sampling keeps a pick O(choices)
and avoids the herd that "globally least loaded" causes when many proxies see the same counts.

With unequal weights it is the round-robin schedule of `lb.py` whose weights move with load:
when a host's turn comes, its next turn is due after `1 / (weight / (active + 1) ** bias)`, so
a busy host's turns spread out. `active_request_bias` 0 is plain weighted round robin, 1 (the
default) divides by the load, and larger values weigh load more.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar


class Loaded(Protocol):
    @property
    def rq_active(self) -> int: ...


H = TypeVar("H", bound=Loaded)


class LeastRequest(Generic[H]):
    __slots__ = ("_bias", "_choices", "_heap", "_hosts", "_random", "_weights")

    def __init__(
        self,
        hosts: Sequence[H],
        weights: Sequence[int],
        choice_count: int = 2,
        active_request_bias: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        pairs = [(host, weight) for host, weight in zip(hosts, weights, strict=True) if weight > 0]
        self._hosts = [host for host, _ in pairs]
        self._weights = [float(weight) for _, weight in pairs]
        self._choices = choice_count
        self._bias = active_request_bias
        self._random = (rng or random.Random()).random
        self._heap: list[tuple[float, int]] | None = None
        if len(set(self._weights)) > 1:
            self._heap = [(1.0 / weight, i) for i, weight in enumerate(self._weights)]
            heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._hosts)

    def pick(self, hash_key: int | None = None) -> H | None:
        hosts = self._hosts
        count = len(hosts)
        if count == 0:
            return None
        heap = self._heap
        if heap is None:
            draw = self._random
            best = hosts[int(draw() * count)]
            for _ in range(self._choices - 1):
                other = hosts[int(draw() * count)]
                if other.rq_active < best.rq_active:
                    best = other
            return best
        deadline, index = heap[0]
        host = hosts[index]
        weight = self._weights[index]
        if self._bias:
            weight /= (host.rq_active + 1) ** self._bias
        heapq.heapreplace(heap, (deadline + 1.0 / weight, index))
        return host
