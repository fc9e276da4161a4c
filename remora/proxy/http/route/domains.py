"""Virtual host selection by the request's authority.

Envoy's order: an exact domain, then the longest `*suffix` wildcard, then the longest `prefix*`
wildcard, then the catch-all `*`. Matching is case-insensitive and a wildcard never matches the
empty string. The port is part of the authority unless `ignore_port_in_host_matching` is set
(Envoy does not retry without the port). Wildcards are bucketed by length, so a lookup is one dict
probe per distinct wildcard length, longest first.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


def strip_port(authority: str) -> str:
    """`host:80` -> `host`, `[::1]:80` -> `[::1]`; only a numeric port after the last colon
    (and after any IPv6 `]`) is a port."""
    colon = authority.rfind(":")
    if colon < 0 or authority.rfind("]") > colon:
        return authority
    port = authority[colon + 1 :]
    if not port.isdigit() or not port.isascii() or int(port) > 0xFFFFFFFF:
        return authority
    return authority[:colon]


class DomainIndex(Generic[T]):
    # A plain class rather than a slotted dataclass: mypyc compiles this module (one lookup per
    # request) and cannot build a generic slotted dataclass.
    __slots__ = ("default", "exact", "ignore_port", "prefixes", "suffixes")

    def __init__(
        self,
        exact: dict[str, T],
        suffixes: tuple[tuple[int, dict[str, T]], ...],
        prefixes: tuple[tuple[int, dict[str, T]], ...],
        default: T | None,
        ignore_port: bool,
    ) -> None:
        self.exact = exact
        # (length, {suffix: value}) sorted by length, longest first; keys exclude the "*".
        self.suffixes = suffixes
        self.prefixes = prefixes
        self.default = default
        self.ignore_port = ignore_port

    def find(self, authority: str) -> T | None:
        host = authority.lower()
        if self.ignore_port:
            host = strip_port(host)
        found = self.exact.get(host)
        if found is not None:
            return found
        size = len(host)
        for length, table in self.suffixes:
            if size > length:
                found = table.get(host[size - length :])
                if found is not None:
                    return found
        for length, table in self.prefixes:
            if size > length:
                found = table.get(host[:length])
                if found is not None:
                    return found
        return self.default


class DomainIndexBuilder(Generic[T]):
    """Collects domains; `add` reports a duplicate by returning False."""

    def __init__(self) -> None:
        self._exact: dict[str, T] = {}
        self._suffixes: dict[int, dict[str, T]] = {}
        self._prefixes: dict[int, dict[str, T]] = {}
        self._default: T | None = None
        self._has_default = False

    def add(self, domain: str, value: T) -> bool:
        domain = domain.lower()
        if domain == "*":
            if self._has_default:
                return False
            self._default, self._has_default = value, True
            return True
        if domain.startswith("*"):
            table = self._suffixes.setdefault(len(domain) - 1, {})
            key = domain[1:]
        elif domain.endswith("*"):
            table = self._prefixes.setdefault(len(domain) - 1, {})
            key = domain[:-1]
        else:
            table, key = self._exact, domain
        if key in table:
            return False
        table[key] = value
        return True

    def build(self, ignore_port: bool) -> DomainIndex[T]:
        def ordered(buckets: dict[int, dict[str, T]]) -> tuple[tuple[int, dict[str, T]], ...]:
            return tuple(sorted(buckets.items(), key=lambda item: -item[0]))

        return DomainIndex(
            exact=dict(self._exact),
            suffixes=ordered(self._suffixes),
            prefixes=ordered(self._prefixes),
            default=self._default,
            ignore_port=ignore_port,
        )
