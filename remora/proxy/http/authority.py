"""Whether a Host field (or an absolute-form target's authority) is one the proxy may route.

RFC 9112 §3.2 makes Host `uri-host [":" port]`, with the URI grammar of RFC 3986 §3.2.2: a
bracketed IP literal, or a reg-name of unreserved characters, percent-escapes and sub-delims.
Anything else (`a/evil?x`, `a b`, `a\\xe9`, a userinfo `@`) is not an authority: routing it
would match a virtual host on a value the upstream may read differently, so it gets a 400.

One deliberate narrowing of RFC 3986: a comma is refused. Host is a single value, and servers
that read field values as lists would see `a,b` as two hosts.
"""

from __future__ import annotations

import string

_REG_NAME = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+;=")
_IP_LITERAL = frozenset(string.hexdigits + ":.") | _REG_NAME  # IPv6, IPvFuture ("v1.x")
_HEX = frozenset(string.hexdigits)


def valid_authority(authority: str) -> bool:
    # Clients send the same few hosts over and over: remember the valid ones (bounded).
    if authority in _known_valid:
        return True
    if not _check(authority):
        return False
    if len(_known_valid) >= _KNOWN_LIMIT:
        _known_valid.clear()
    _known_valid.add(authority)
    return True


_KNOWN_LIMIT = 1024
_known_valid: set[str] = set()


def _check(authority: str) -> bool:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 2:
            return False
        if not _allowed(authority[1:end], _IP_LITERAL):
            return False
        rest = authority[end + 1 :]
        if not rest:
            return True
        if rest[0] != ":":
            return False
        return _valid_port(rest[1:])
    host, colon, port = authority.partition(":")
    if not host or not _allowed(host, _REG_NAME):
        return False
    return not colon or _valid_port(port)


def _allowed(text: str, allowed: frozenset[str]) -> bool:
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "%":
            # A percent-escape is two hex digits (a slice past the end is "", never a digit).
            if text[i + 1 : i + 2] not in _HEX or text[i + 2 : i + 3] not in _HEX:
                return False
            i += 3
            continue
        if c not in allowed:
            return False
        i += 1
    return True


def _valid_port(port: str) -> bool:
    """RFC 3986 allows an empty port; a present one is decimal digits within 16 bits."""
    if not port:
        return True
    return port.isascii() and port.isdigit() and int(port) <= 65535
