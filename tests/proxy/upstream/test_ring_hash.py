"""RING_HASH: sizing as Envoy sizes it, stickiness, and ~1/N movement on a host-set change."""

from __future__ import annotations

import random
import time

import xxhash

from remora.proxy.upstream.ring_hash import RingHash, ring_points


def _keys(count: int) -> list[int]:
    return [xxhash.xxh64_intdigest(f"user-{i}".encode()) for i in range(count)]


def _ring(names: list[str], weights: list[float] | None = None) -> RingHash[str]:
    return RingHash(names, names, weights or [1.0] * len(names))


def test_points_per_host_do_not_depend_on_the_number_of_hosts() -> None:
    assert ring_points([1, 1, 1], 1024, 8 << 20) == [1024, 1024, 1024]
    assert ring_points([1, 1, 1, 1, 1], 1024, 8 << 20) == [1024] * 5
    assert ring_points([1, 3], 1024, 8 << 20) == [1024, 3072]
    assert ring_points([2, 6], 16, 8 << 20) == [16, 48]  # weights count relative to the lightest
    # The cap wins over the minimum: 1:1e6 weights would need a billion points.
    points = ring_points([1, 1_000_000], 1024, 10_000)
    assert sum(points) == 10_000 and points[0] == 1
    assert _ring(["a", "b", "c"]).size == 3072


def test_a_key_always_lands_on_the_same_host_and_every_host_gets_keys() -> None:
    names = [f"10.0.0.{i}:80" for i in range(5)]
    ring, again = _ring(names), _ring(list(names))
    keys = _keys(5000)
    picks = [ring.pick(key) for key in keys]
    assert picks == [again.pick(key) for key in keys]
    shares = {name: picks.count(name) for name in names}
    assert all(700 < share < 1300 for share in shares.values()), shares


def test_a_host_set_change_moves_about_one_in_n_keys() -> None:
    names = [f"10.0.0.{i}:80" for i in range(4)]
    before = _ring(names)
    after = _ring([*names, "10.0.0.9:80"])
    keys = _keys(10_000)
    moved = [key for key in keys if before.pick(key) != after.pick(key)]
    # The new host takes about 1/5; a key that moved went to the new host, never elsewhere.
    assert 1600 < len(moved) < 2400
    assert all(after.pick(key) == "10.0.0.9:80" for key in moved)
    removed = _ring(names[1:])
    moved = [key for key in keys if before.pick(key) != removed.pick(key)]
    assert all(before.pick(key) == names[0] for key in moved)


def test_weights_give_their_share() -> None:
    ring = _ring(["a", "b"], [1.0, 3.0])
    picks = [ring.pick(key) for key in _keys(8000)]
    assert 0.18 < picks.count("a") / 8000 < 0.32


def test_wraps_past_the_last_point_and_handles_no_key_or_no_host() -> None:
    ring = _ring(["a", "b"])
    assert ring.pick(2**64 - 1) == ring.pick(0)
    assert ring.pick(None) in ("a", "b")
    assert RingHash([], [], []).pick(5) is None
    assert RingHash(["a"], ["a"], [0.0]).pick(5) is None


def test_huge_weight_ratio_stays_within_the_cap_and_builds_fast() -> None:
    started = time.perf_counter()
    ring = RingHash(["a", "b"], ["a", "b"], [1.0, 10_000_000.0], max_size=64 * 1024)
    assert time.perf_counter() - started < 2.0
    assert ring.size <= 64 * 1024 + 2
    picks = [ring.pick(random.getrandbits(64)) for _ in range(1000)]
    assert picks.count("b") > 990
