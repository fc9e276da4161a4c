"""Envoy's RING_HASH: consistent hashing on a ring of xxHash64 points (Karger et al.).

Each host owns points on a 64-bit ring, in proportion to its weight; a request's hash key goes
to the host owning the first point at or after it. When a host joins or leaves, only the keys
between its points and their neighbours move, about 1/N of them, which is what makes sessions
"sticky" across a host-set change.

Each host of the lightest weight owns `minimum_ring_size` points and heavier hosts own
proportionally more, so a host's points do not depend on how many other hosts there are: a
host-set change moves only the keys of the hosts that came or went, about 1/N. (Envoy instead
spreads `minimum_ring_size` points over all hosts, so every host's share of points shrinks
when one joins, and going from 4 hosts to 5 moves about 30% of keys instead of 20%.)
`maximum_ring_size` caps the ring; only at the cap do point counts depend on the host count.
Point `i` of a host hashes `<address>_<i>` (or `<hostname>_<i>` with
`use_hostname_for_hashing`), so every sidecar builds the same ring from the same hosts. A
request with no hash key goes to a random host.

A ring costs about 1 µs per point to build here, most of it the sort: a few milliseconds for
a handful of hosts. Envoy's default cap of 8M points would mean seconds on the event loop for
very uneven weights, so remora's default `maximum_ring_size` is 1M (about a second), and an
explicit value up to 8M is honoured.
"""

from __future__ import annotations

import bisect
import math
import random
from array import array
from collections.abc import Sequence
from typing import Generic, TypeVar

import xxhash

T = TypeVar("T")

DEFAULT_MIN_RING_SIZE = 1024
DEFAULT_MAX_RING_SIZE = 1024 * 1024
LIMIT_RING_SIZE = 8 * 1024 * 1024  # Envoy's bound on either size
_INDEX_BITS = 24  # host index packed under the hash while sorting: 16M hosts
_INDEX_MASK = (1 << _INDEX_BITS) - 1


def ring_points(weights: Sequence[float], min_size: int, max_size: int) -> list[int]:
    """How many points each host gets (weights > 0, any scale)."""
    smallest = min(weights)
    scale = min(float(min_size), max_size * smallest / sum(weights))  # points per `smallest`
    # A running target spreads the rounding over the hosts, so the ring stays within the cap.
    points: list[int] = []
    done = 0
    target = 0.0
    for weight in weights:
        target += scale * weight / smallest
        count = max(math.ceil(target - done), 0)
        points.append(count)
        done += count
    return points


class RingHash(Generic[T]):
    __slots__ = ("_hashes", "_hosts", "_index", "_random")

    def __init__(
        self,
        hosts: Sequence[T],
        keys: Sequence[str],
        weights: Sequence[float],
        min_size: int = DEFAULT_MIN_RING_SIZE,
        max_size: int = DEFAULT_MAX_RING_SIZE,
        rng: random.Random | None = None,
    ) -> None:
        usable = [(h, k, w) for h, k, w in zip(hosts, keys, weights, strict=True) if w > 0]
        self._hosts = [host for host, _, _ in usable]
        self._random = (rng or random.Random()).random
        self._hashes = array("Q")
        self._index = array("I")
        if not usable:
            return
        counts = ring_points([w for _, _, w in usable], min_size, max_size)
        hash64 = xxhash.xxh64_intdigest
        packed: list[int] = []
        for index, ((_host, key, _w), count) in enumerate(zip(usable, counts, strict=True)):
            prefix = f"{key}_"
            packed.extend(
                (hash64(f"{prefix}{i}".encode()) << _INDEX_BITS) | index for i in range(count)
            )
        # One sort of plain ints (hash above, host below) is several times faster than sorting
        # pairs; equal hashes keep the lower host index first, a stable tie-break.
        packed.sort()
        self._hashes = array("Q", [item >> _INDEX_BITS for item in packed])
        self._index = array("I", [item & _INDEX_MASK for item in packed])

    def __len__(self) -> int:
        return len(self._hosts)

    @property
    def size(self) -> int:
        return len(self._hashes)

    def pick(self, hash_key: int | None = None) -> T | None:
        hosts = self._hosts
        if not hosts:
            return None
        if hash_key is None:
            return hosts[int(self._random() * len(hosts))]
        at = bisect.bisect_left(self._hashes, hash_key)
        return hosts[self._index[at if at < len(self._hashes) else 0]]
