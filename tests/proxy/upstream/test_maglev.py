"""MAGLEV: an even table, weights, stickiness and small movement on a host-set change."""

from __future__ import annotations

from collections import Counter

import pytest
import xxhash

from remora.proxy.upstream.maglev import Maglev, build_table, is_prime


def _keys(count: int) -> list[int]:
    return [xxhash.xxh64_intdigest(f"session-{i}".encode()) for i in range(count)]


def test_every_slot_is_filled_evenly() -> None:
    table = build_table([f"10.0.0.{i}:80" for i in range(7)], [1.0] * 7, 65537)
    assert len(table) == 65537
    counts = Counter(table)
    assert set(counts) == set(range(7))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_weights_give_their_share_of_slots() -> None:
    counts = Counter(build_table(["a", "b", "c"], [1.0, 2.0, 1.0], 65537))
    assert abs(counts[1] / 65537 - 0.5) < 0.01
    assert abs(counts[0] - counts[2]) <= 1


def test_a_host_set_change_moves_few_keys() -> None:
    names = [f"10.0.0.{i}:80" for i in range(5)]
    before = Maglev(names, names, [1.0] * 5)
    after = Maglev(names[:4], names[:4], [1.0] * 4)
    keys = _keys(10_000)
    moved = sum(before.pick(key) != after.pick(key) for key in keys if before.pick(key) != names[4])
    lost = sum(before.pick(key) == names[4] for key in keys)
    assert 1500 < lost < 2500
    # Keys of the hosts that stayed mostly stay: the paper bounds the disruption near 1/N.
    assert moved < 0.05 * (10_000 - lost)


def test_sticky_and_even_for_keys() -> None:
    names = ["a", "b", "c"]
    lb = Maglev(names, names, [1.0] * 3)
    keys = _keys(3000)
    picks = [lb.pick(key) for key in keys]
    again = Maglev(list(names), list(names), [1.0] * 3)
    assert picks == [again.pick(key) for key in keys]
    assert all(850 < picks.count(name) < 1150 for name in names)
    assert lb.pick(None) in names
    assert Maglev([], [], []).pick(1) is None


@pytest.mark.parametrize(("n", "prime"), [(2, True), (9, False), (65537, True), (65536, False)])
def test_prime(n: int, prime: bool) -> None:
    assert is_prime(n) is prime
