"""The balancer a cluster's `lb_policy` asks for, built over its current hosts.

Rebuilt whenever the host set or a host's health changes (EDS, DNS, health checks, outlier
ejections), never per request. Hosts are grouped by priority (`priority.py` gives each level
its share of traffic and says which levels panic); inside a level only available hosts are
balanced unless it panics. Round robin, least request and random honour
`locality_weighted_lb_config` by picking a locality first (`lb.LocalityWeighted`), each
locality's weight scaled by its own availability times the overprovisioning factor as in
Envoy; the consistent-hash policies fold the locality's share into each host's weight instead,
since a key must map to one host through one table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from remora.proxy.stats import Counter
from remora.proxy.upstream.lb import Balancer, LocalityWeighted, Random, WeightedRoundRobin
from remora.proxy.upstream.lb_config import LbConfig, LbPolicy
from remora.proxy.upstream.least_request import LeastRequest
from remora.proxy.upstream.maglev import Maglev
from remora.proxy.upstream.priority import PriorityBalancer, level_health, plan_levels
from remora.proxy.upstream.ring_hash import RingHash

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Host


def build_balancer(
    lb: LbConfig,
    hosts: Sequence[Host],
    by_locality: bool,
    overprovisioning: int,
    panic: Counter,
) -> Balancer[Host]:
    levels: dict[int, list[Host]] = {}
    for host in hosts:
        levels.setdefault(host.priority, []).append(host)
    ordered = [levels[p] for p in sorted(levels)]
    if len(ordered) <= 1 and all(host.available for host in hosts):  # the common case
        return _level(lb, hosts, hosts, by_locality, overprovisioning, panic=False)
    plans = plan_levels(
        [(sum(1 for h in level if h.available), len(level)) for level in ordered],
        overprovisioning,
        lb.panic_threshold,
    )
    parts: list[tuple[int, Balancer[Host], bool]] = []
    for level, plan in zip(ordered, plans, strict=True):
        if plan.load:
            members = level if plan.panic else [h for h in level if h.available]
            balancer = _level(lb, level, members, by_locality, overprovisioning, plan.panic)
            parts.append((plan.load, balancer, plan.panic))
    if len(parts) == 1 and not parts[0][2]:
        return parts[0][1]
    return PriorityBalancer(parts, panic)


def _level(
    lb: LbConfig,
    level: Sequence[Host],
    members: Sequence[Host],
    by_locality: bool,
    overprovisioning: int,
    panic: bool,
) -> Balancer[Host]:
    """The policy's balancer over `members`, one level's chosen hosts; with locality weights,
    each locality's weight is scaled by its availability among all of the level's hosts
    (unscaled when the level panics, since then every host is used)."""
    weights = _locality_weights(level, overprovisioning, panic) if by_locality else None
    if lb.policy.hashing:
        keys = [
            host.hostname if lb.use_hostname_for_hashing and host.hostname else str(host)
            for host in members
        ]
        shares = (
            _locality_shares(members, weights)
            if weights is not None
            else [float(host.weight) for host in members]
        )
        if lb.policy is LbPolicy.RING_HASH:
            return RingHash(members, keys, shares, lb.min_ring_size, lb.max_ring_size)
        return Maglev(members, keys, shares, lb.table_size)
    inner = _inner(lb)
    if weights is None:
        return inner(members, [host.weight for host in members])
    groups: dict[int, list[Host]] = {}
    for host in members:
        groups.setdefault(host.locality, []).append(host)
    return LocalityWeighted(
        [(weights[loc], group, [h.weight for h in group]) for loc, group in groups.items()],
        inner,
    )


def _locality_weights(level: Sequence[Host], overprovisioning: int, panic: bool) -> dict[int, int]:
    """Each locality's effective weight: its load_balancing_weight times its health (0-100)."""
    weight: dict[int, int] = {}
    counts: dict[int, list[int]] = {}
    for host in level:
        weight[host.locality] = host.locality_weight
        count = counts.setdefault(host.locality, [0, 0])
        count[0] += host.available
        count[1] += 1
    if panic:
        return weight
    return {
        loc: w * level_health(counts[loc][0], counts[loc][1], overprovisioning)
        for loc, w in weight.items()
    }


Inner = Callable[[Sequence["Host"], Sequence[int]], Balancer["Host"]]


def _inner(lb: LbConfig) -> Inner:
    if lb.policy is LbPolicy.LEAST_REQUEST:
        return partial(
            LeastRequest,
            choice_count=lb.choice_count,
            active_request_bias=lb.active_request_bias,
        )
    if lb.policy is LbPolicy.RANDOM:
        return _random
    return WeightedRoundRobin


def _random(hosts: Sequence[Host], weights: Sequence[int]) -> Random[Host]:
    return Random([host for host, weight in zip(hosts, weights, strict=True) if weight > 0])


def _locality_shares(hosts: Sequence[Host], locality_weight: dict[int, int]) -> list[float]:
    """Each host's share of traffic: its locality's share times its share inside it."""
    inside: dict[int, int] = {}
    for host in hosts:
        inside[host.locality] = inside.get(host.locality, 0) + host.weight
    total = sum(locality_weight[loc] for loc in inside)
    if total == 0:
        return [0.0] * len(hosts)
    return [
        locality_weight[host.locality] / total * host.weight / inside[host.locality]
        for host in hosts
    ]
