"""An order-preserving index that narrows a virtual host's routes to those that can match a path.

Routes are tried in order and the first match wins, so an index may only drop routes that cannot
match. Every path specifier implies a literal prefix the path must start with (a prefix, an exact
path, a separated prefix, or the leading literal of a regex). Routes are bucketed by the first `k`
characters of that prefix, lowercased so case-insensitive routes share buckets; a route whose
prefix is shorter than `k` (like the catch-all "/") goes into every bucket. A request then scans
only its bucket, in the original order. `k` is chosen at compile time to keep buckets small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

# Below this many routes a plain scan is as fast as the index lookup.
MIN_ROUTES = 8
_MAX_KEY = 32
_META = frozenset("\\.^$*+?()[]{}|")


def regex_literal_prefix(pattern: str) -> str:
    """The literal text every full match of the RE2 `pattern` starts with ("" when unsure)."""
    if "|" in pattern:
        return ""
    text = pattern[1:] if pattern.startswith("^") else pattern
    end = 0
    while end < len(text) and text[end] not in _META:
        end += 1
    if end < len(text) and text[end] in "*?{":
        end -= 1  # the last literal is optional or repeated
    return text[: max(end, 0)]


def usable_prefix(prefix: str) -> str:
    """Only ASCII prefixes are indexed: lowercasing them cannot change their length."""
    return prefix.lower() if prefix.isascii() else ""


class PathIndex(Generic[T]):
    # A plain class: mypyc compiles this module (one lookup per request) and cannot build a
    # generic slotted dataclass.
    __slots__ = ("buckets", "fallback", "key_len")

    def __init__(
        self, key_len: int, buckets: dict[str, tuple[T, ...]], fallback: tuple[T, ...]
    ) -> None:
        self.key_len = key_len
        self.buckets = buckets
        self.fallback = fallback  # routes that may match a path whose key has no bucket

    def candidates(self, lowered_path: str) -> tuple[T, ...]:
        return self.buckets.get(lowered_path[: self.key_len], self.fallback)


def _bucketize(
    entries: Sequence[tuple[str, T]], key_len: int
) -> tuple[dict[str, tuple[T, ...]], tuple[T, ...]]:
    keys = {prefix[:key_len] for prefix, _ in entries if len(prefix) >= key_len}
    buckets = {
        key: tuple(
            item for prefix, item in entries if len(prefix) < key_len or prefix.startswith(key)
        )
        for key in keys
    }
    fallback = tuple(item for prefix, item in entries if len(prefix) < key_len)
    return buckets, fallback


def build_index(entries: Sequence[tuple[str, T]]) -> PathIndex[T] | None:
    """`entries` are (lowercased required prefix, item) in route order; None if not worth it."""
    if len(entries) < MIN_ROUTES:
        return None
    lengths = sorted({min(len(prefix), _MAX_KEY) for prefix, _ in entries if len(prefix) >= 2})
    best: PathIndex[T] | None = None
    best_score = len(entries)
    for key_len in lengths:
        buckets, fallback = _bucketize(entries, key_len)
        score = max([len(fallback), *(len(bucket) for bucket in buckets.values())])
        if score < best_score:
            best, best_score = PathIndex(key_len, buckets, fallback), score
    return best
