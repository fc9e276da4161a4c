"""The balancer a cluster's `lb_policy` asks for, built over its current hosts.

Rebuilt whenever the host set changes (EDS, DNS, health). Round robin, least request and random
honour `locality_weighted_lb_config` by picking a locality first (`lb.LocalityWeighted`); the
consistent-hash policies fold the locality's share into each host's weight instead, since a
key must map to one host through one table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from remora.proxy.upstream.lb import Balancer, LocalityWeighted, Random, WeightedRoundRobin
from remora.proxy.upstream.lb_config import LbConfig, LbPolicy
from remora.proxy.upstream.least_request import LeastRequest
from remora.proxy.upstream.maglev import Maglev
from remora.proxy.upstream.ring_hash import RingHash

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Host


def build_balancer(
    lb: LbConfig,
    hosts: Sequence[Host],
    localities: Sequence[tuple[int, int]] | None,
    by_locality: bool,
) -> Balancer[Host]:
    """`localities` holds, per host, (locality index, locality weight)."""
    by_locality = by_locality and localities is not None
    if lb.policy.hashing:
        keys = [
            host.hostname if lb.use_hostname_for_hashing and host.hostname else str(host)
            for host in hosts
        ]
        weights = (
            _locality_shares(hosts, localities)
            if by_locality and localities is not None
            else [float(host.weight) for host in hosts]
        )
        if lb.policy is LbPolicy.RING_HASH:
            return RingHash(hosts, keys, weights, lb.min_ring_size, lb.max_ring_size)
        return Maglev(hosts, keys, weights, lb.table_size)
    inner = _inner(lb)
    if not by_locality or localities is None:
        return inner(hosts, [host.weight for host in hosts])
    groups: dict[int, tuple[int, list[Host]]] = {}
    for host, (locality, weight) in zip(hosts, localities, strict=True):
        groups.setdefault(locality, (weight, []))[1].append(host)
    return LocalityWeighted(
        [(weight, members, [h.weight for h in members]) for weight, members in groups.values()],
        inner,
    )


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


def _locality_shares(hosts: Sequence[Host], localities: Sequence[tuple[int, int]]) -> list[float]:
    """Each host's share of traffic: its locality's share times its share inside it."""
    locality_weight: dict[int, int] = {}
    inside: dict[int, int] = {}
    for host, (locality, weight) in zip(hosts, localities, strict=True):
        locality_weight[locality] = weight
        inside[locality] = inside.get(locality, 0) + host.weight
    total = sum(locality_weight.values())
    if total == 0:
        return [0.0] * len(hosts)
    return [
        locality_weight[locality] / total * host.weight / inside[locality]
        for host, (locality, _weight) in zip(hosts, localities, strict=True)
    ]
