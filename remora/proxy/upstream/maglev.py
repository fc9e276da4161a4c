"""Envoy's MAGLEV: consistent hashing through a fixed lookup table (Google's Maglev paper).

Every host has its own permutation of the table's slots, `(offset + j * skip) mod M`, with
offset and skip drawn from two xxHash64 hashes of its key (seeds 0 and 1), as in Envoy. Hosts
take turns claiming the next free slot of their permutation until the table is full; a host
with half the top weight takes a turn every second round. A lookup is then one modulo and one
index, whatever the number of hosts, and a host-set change moves few keys (the paper bounds it
near 1/N; a little more than the ring, in exchange for the even spread and the O(1) pick).

M must be prime so that every skip visits every slot. Envoy's default is 65537; building
that table costs M·ln M probes, tens of milliseconds here, paid once per host-set change.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence
from typing import Generic, TypeVar

import xxhash

T = TypeVar("T")

DEFAULT_TABLE_SIZE = 65537
MAX_TABLE_SIZE = 5_000_011  # Envoy's upper bound on table_size


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    divisor = 3
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 2
    return True


def build_table(keys: Sequence[str], weights: Sequence[float], size: int) -> array[int]:
    """The slot -> host-index table for hosts with the given keys and weights (> 0)."""
    hash64 = xxhash.xxh64_intdigest
    offsets = [hash64(key.encode()) % size for key in keys]
    skips = [hash64(key.encode(), seed=1) % (size - 1) + 1 for key in keys]
    top = max(weights)
    shares = [weight / top for weight in weights]
    credit = [0.0] * len(keys)
    position = list(offsets)  # each host's next slot to try, offset + j * skip
    empty = 0xFFFFFFFF
    table = array("I", [empty]) * size
    filled = 0
    while filled < size:
        for host in range(len(keys)):
            credit[host] += shares[host]
            if credit[host] < 1.0:
                continue
            credit[host] -= 1.0
            slot = position[host]
            skip = skips[host]
            while table[slot] != empty:
                slot += skip
                if slot >= size:
                    slot -= size
            table[slot] = host
            slot += skip
            position[host] = slot - size if slot >= size else slot
            filled += 1
            if filled == size:
                break
    return table


class Maglev(Generic[T]):
    __slots__ = ("_hosts", "_random", "_table")

    def __init__(
        self,
        hosts: Sequence[T],
        keys: Sequence[str],
        weights: Sequence[float],
        table_size: int = DEFAULT_TABLE_SIZE,
        rng: random.Random | None = None,
    ) -> None:
        usable = [(h, k, w) for h, k, w in zip(hosts, keys, weights, strict=True) if w > 0]
        self._hosts = [host for host, _, _ in usable]
        self._random = (rng or random.Random()).random
        self._table = (
            build_table([k for _, k, _ in usable], [w for _, _, w in usable], table_size)
            if usable
            else array("I")
        )

    def __len__(self) -> int:
        return len(self._hosts)

    def pick(self, hash_key: int | None = None) -> T | None:
        hosts = self._hosts
        if not hosts:
            return None
        if hash_key is None:
            return hosts[int(self._random() * len(hosts))]
        table = self._table
        return hosts[table[hash_key % len(table)]]
