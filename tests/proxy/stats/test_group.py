from dataclasses import dataclass

import pytest

from remora.proxy.stats import Counter, Gauge, Histogram, Store
from remora.proxy.stats.group import by_response_class, resolve_group


@dataclass
class Sample:
    rq_1xx: Counter
    rq_2xx: Counter
    rq_3xx: Counter
    rq_4xx: Counter
    rq_5xx: Counter
    active: Gauge
    time: Histogram


def test_fields_resolve_to_named_stats_of_their_kind() -> None:
    store = Store()
    group = resolve_group(Sample, store, "cluster.a.")
    group.rq_2xx.inc()
    group.active.inc()
    group.time.record(3.0)
    assert store.counter("cluster.a.rq_2xx").value == 1
    assert store.gauge("cluster.a.active").value == 1
    assert store.histogram("cluster.a.time") is group.time
    assert resolve_group(Sample, store, "cluster.a.").rq_2xx is group.rq_2xx  # same objects
    classes = by_response_class(group, "rq")
    assert classes[1] is group.rq_2xx and classes[4] is group.rq_5xx


def test_a_field_that_is_not_a_stat_is_refused() -> None:
    @dataclass
    class Bad:
        name: str

    with pytest.raises(TypeError, match=r"Bad\.name"):
        resolve_group(Bad, Store(), "x.")
