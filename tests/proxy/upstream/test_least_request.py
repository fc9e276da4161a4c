"""Envoy's LEAST_REQUEST: two random choices for equal weights, load-scaled weights otherwise."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from remora.proxy.upstream.least_request import LeastRequest


@dataclass
class FakeLoad:
    name: str
    rq_active: int = 0


def test_two_choices_never_pick_the_busier_of_two() -> None:
    idle, busy = FakeLoad("idle"), FakeLoad("busy", rq_active=5)
    lb = LeastRequest([idle, busy], [1, 1], rng=random.Random(1))
    picks = Counter(lb.pick().name for _ in range(1000))  # type: ignore[union-attr]
    # The busy host wins only when both samples are the busy host: a quarter of the time.
    assert 180 < picks["busy"] < 320 and picks["idle"] + picks["busy"] == 1000


def test_more_choices_find_the_idle_host_more_often() -> None:
    hosts = [FakeLoad(str(i), rq_active=10) for i in range(9)] + [FakeLoad("idle")]
    two = LeastRequest(hosts, [1] * 10, choice_count=2, rng=random.Random(2))
    five = LeastRequest(hosts, [1] * 10, choice_count=5, rng=random.Random(2))
    share2 = sum(two.pick() is hosts[-1] for _ in range(2000))
    share5 = sum(five.pick() is hosts[-1] for _ in range(2000))
    assert 300 < share2 < 500  # 1 - 0.9^2 = 19%
    assert 700 < share5 < 1100  # 1 - 0.9^5 = 41%


def test_unequal_weights_follow_the_weights_when_idle_and_shift_with_load() -> None:
    a, b = FakeLoad("a"), FakeLoad("b")
    lb = LeastRequest([a, b], [3, 1])
    assert Counter(lb.pick().name for _ in range(400)) == {"a": 300, "b": 100}  # type: ignore[union-attr]
    # a carries 5 requests: its effective weight 3 / (5 + 1) = 0.5 is now below b's 1.
    a.rq_active = 5
    lb = LeastRequest([a, b], [3, 1])
    picks = Counter(lb.pick().name for _ in range(300))  # type: ignore[union-attr]
    assert picks["b"] > picks["a"]


def test_zero_bias_is_weighted_round_robin_whatever_the_load() -> None:
    a, b = FakeLoad("a", rq_active=100), FakeLoad("b")
    lb = LeastRequest([a, b], [3, 1], active_request_bias=0.0)
    assert Counter(lb.pick().name for _ in range(400)) == {"a": 300, "b": 100}  # type: ignore[union-attr]


def test_no_hosts() -> None:
    assert LeastRequest([], []).pick() is None
    assert LeastRequest([FakeLoad("a")], [0]).pick() is None
