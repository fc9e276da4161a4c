from __future__ import annotations

import pytest

from remora.proxy.stats.metrics import Counter, Gauge


def test_counter_counts_and_reports_used() -> None:
    counter = Counter("cluster.demo.upstream_rq_total")
    assert counter.value == 0
    assert not counter.used
    counter.inc()
    counter.inc(3)
    assert counter.value == 4
    assert counter.used


def test_gauge_moves_both_ways_and_stays_used_at_zero() -> None:
    gauge = Gauge("cluster.demo.upstream_cx_active")
    assert not gauge.used
    gauge.inc()
    gauge.inc(2)
    gauge.dec()
    assert gauge.value == 2
    gauge.dec(2)
    assert gauge.value == 0
    assert gauge.used  # Envoy: changed at least once, even if back at zero
    gauge.set(5)
    assert gauge.value == 5


@pytest.mark.parametrize("cls", [Counter, Gauge])
def test_hot_path_objects_have_no_instance_dict(cls: type[Counter] | type[Gauge]) -> None:
    # __slots__ keeps `.inc()` a fixed-offset store and stops typos from creating new attributes.
    stat = cls("x")
    assert not hasattr(stat, "__dict__")
    with pytest.raises(AttributeError):
        setattr(stat, "valeu", 1)  # noqa: B010
