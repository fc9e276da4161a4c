"""A dataclass of stats resolved in one go: each field becomes `<prefix><field name>`.

The data path keeps such a group per cluster or per connection manager, so a per-request update is
an attribute access on an already-resolved object, never a name lookup in the store.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from remora.proxy.stats.histogram import Histogram
from remora.proxy.stats.metrics import Counter, Gauge
from remora.proxy.stats.store import Store

G = TypeVar("G")


def resolve_group(cls: type[G], store: Store, prefix: str) -> G:
    """Build `cls` with every init field fetched from `store` by its annotated kind."""
    values: dict[str, Counter | Gauge | Histogram] = {}
    for field in fields(cls):  # type: ignore[arg-type]
        if not field.init:
            continue
        name = prefix + field.name
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        if kind == "Gauge":
            values[field.name] = store.gauge(name)
        elif kind == "Histogram":
            values[field.name] = store.histogram(name)
        elif kind == "Counter":
            values[field.name] = store.counter(name)
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: not a stat type ({kind})")
    group: Any = cls(**values)
    return group  # type: ignore[no-any-return]


def by_response_class(group: Any, stem: str) -> tuple[Counter, Counter, Counter, Counter, Counter]:
    """The 1xx..5xx counters of a group, indexed by `status // 100 - 1`."""
    counters = tuple(getattr(group, f"{stem}_{n}xx") for n in range(1, 6))
    return counters[0], counters[1], counters[2], counters[3], counters[4]
