"""A secret delivered again (over ADS, or by the identity agent) reaches the contexts built on it.

Only the contexts that named a changed secret are rebuilt, all of them before any is swapped:
if one cannot take the new value (a key that does not match its certificate, a bundle that
does not parse) the update is refused as a whole with every problem named, and every context
keeps what it has. That is what lets the ADS client NACK a bad secret. A secret withdrawn
while in use keeps the value a context was built with (the context's `rebuild` sees to it).
"""

from __future__ import annotations

from collections.abc import Iterable

from remora.config.errors import ConfigError, ConfigErrors
from remora.proxy.tls.config import TlsContext
from remora.proxy.tls.secrets import SecretRef, SecretView


def rebuild_dependents(
    contexts: Iterable[TlsContext], changed: frozenset[SecretRef], view: SecretView
) -> list[tuple[TlsContext, TlsContext]]:
    """(old, new) for every context that uses a changed secret and comes out different;
    raises ConfigErrors when any of them cannot be rebuilt with `view`."""
    pairs: list[tuple[TlsContext, TlsContext]] = []
    problems: list[ConfigError] = []
    seen: set[int] = set()
    for context in contexts:
        if id(context) in seen or context.rebuild is None:
            continue
        seen.add(id(context))
        if not context.secret_refs & changed:
            continue
        try:
            fresh = context.rebuild(view)
        except ConfigErrors as exc:
            problems.extend(exc.errors)
            continue
        if fresh.fingerprint != context.fingerprint:
            pairs.append((context, fresh))
    if problems:
        raise ConfigErrors(problems)
    return pairs
