"""Priority levels: how much traffic each level gets, and when a level panics.

Envoy's rules, in its integer arithmetic: a level's health is the share of its hosts that are
available times the overprovisioning factor (140% by default), capped at 100, so a level with
at least 72% of its hosts up keeps all of its traffic. Levels take traffic in order until 100%
is given out; when the healths add up to less than 100 ("normalized total availability"), each
level's share is scaled up so the shares still sum to 100. In that state a level whose
available hosts fall below the panic threshold balances over all its hosts, healthy or not:
sending some traffic to hosts that may be down beats piling it all onto the few that are up.
When every level panics, the traffic is shared by each level's number of hosts instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from remora.proxy.stats import Counter
from remora.proxy.upstream.lb import Balancer, WeightedRoundRobin

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LevelPlan:
    load: int  # percent of traffic, the plan's loads summing to 100
    panic: bool


def level_health(available: int, total: int, overprovisioning: int) -> int:
    return min(100, overprovisioning * available // total) if total else 0


def plan_levels(
    levels: Sequence[tuple[int, int]], overprovisioning: int, panic_threshold: float
) -> list[LevelPlan]:
    """`levels` holds (available hosts, all hosts) per priority, highest first."""
    health = [level_health(up, total, overprovisioning) for up, total in levels]
    normalized = min(100, sum(health))
    if normalized == 0:
        # Nothing is available anywhere: with panic every level panics (shares by host count,
        # below); with panic disabled the first level takes everything and finds no host.
        if panic_threshold > 0 and any(total for _up, total in levels):
            return _total_panic(levels)
        return [LevelPlan(100 if i == 0 else 0, False) for i in range(len(levels))]
    loads: list[int] = []
    left = 100
    for h in health:
        load = min(left, h * 100 // normalized)
        loads.append(load)
        left -= load
    if left:  # integer rounding: the first level with any health takes the remainder
        first = next(i for i, h in enumerate(health) if h)
        loads[first] += left
    plans = [
        LevelPlan(load, normalized < 100 and 100 * up < panic_threshold * total)
        for load, (up, total) in zip(loads, levels, strict=True)
    ]
    if all(plan.panic for plan in plans):
        return _total_panic(levels)
    return plans


def _total_panic(levels: Sequence[tuple[int, int]]) -> list[LevelPlan]:
    """Every level panics: Envoy then shares the traffic by each level's number of hosts."""
    hosts = sum(total for _up, total in levels)
    loads = [100 * total // hosts for _up, total in levels]
    first = next(i for i, (_up, total) in enumerate(levels) if total)
    loads[first] += 100 - sum(loads)
    return [LevelPlan(load, True) for load in loads]


class PriorityBalancer(Generic[T]):
    """Picks a level by its load, then a host inside it.

    A hash key picks the level too (`key % 100` against the cumulative loads), so a request
    stays on one level while the loads hold. Picks from a panicking level count in the
    cluster's `lb_healthy_panic`.
    """

    __slots__ = ("_bounds", "_levels", "_panic", "_rotation")

    def __init__(self, levels: Sequence[tuple[int, Balancer[T], bool]], panic: Counter) -> None:
        used = [(load, balancer, in_panic) for load, balancer, in_panic in levels if load > 0]
        self._levels = [(balancer, in_panic) for _load, balancer, in_panic in used]
        self._rotation: WeightedRoundRobin[int] = WeightedRoundRobin(
            list(range(len(used))), [load for load, _b, _p in used]
        )
        bounds: list[int] = []
        total = 0
        for load, _balancer, _in_panic in used:
            total += load
            bounds.append(total)
        self._bounds = bounds
        self._panic = panic

    def __len__(self) -> int:
        return sum(len(balancer) for balancer, _in_panic in self._levels)

    def pick(self, hash_key: int | None = None) -> T | None:
        if hash_key is None:
            index = self._rotation.pick()
            if index is None:
                return None
        elif not self._bounds:
            return None
        else:
            point = hash_key % 100
            index = next(i for i, bound in enumerate(self._bounds) if point < bound)
        balancer, in_panic = self._levels[index]
        if in_panic:
            self._panic.inc()
        return balancer.pick(hash_key)
