"""HTTP/1.1 serialisation and the RFC 9110 header rules that are pure functions.

Parsing is httptools' job; writing a request or response head is plain byte assembly, and keeping it
in one place keeps the framing decisions (length, chunked, close-delimited) consistent.
"""

from __future__ import annotations

from http import HTTPStatus

Headers = list[tuple[str, str]]

# RFC 9110 §7.6.1: connection-specific fields a proxy must not forward (plus those that the
# Connection field names).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "trailer",
    }
)

_REASONS = {status.value: status.phrase for status in HTTPStatus}

LAST_CHUNK = b"0\r\n\r\n"


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def strip_hop_by_hop(headers: Headers) -> tuple[Headers, frozenset[str]]:
    """Remove hop-by-hop fields; returns the kept headers and the Connection tokens seen."""
    drop = HOP_BY_HOP
    tokens = _NO_TOKENS
    for name, value in headers:
        if name == "connection":
            if value in _PLAIN_CONNECTION:
                continue  # names only fields that are hop-by-hop anyway
            named = frozenset(t.strip().lower() for t in value.split(",") if t.strip())
            tokens = tokens | named
            drop = drop | named
    return [h for h in headers if h[0] not in drop], tokens


_NO_TOKENS: frozenset[str] = frozenset()
_PLAIN_CONNECTION = frozenset({"keep-alive", "Keep-Alive", "close", "Close"})


def encode_head(start_line: str, headers: Headers) -> bytes:
    parts = [start_line]
    for name, value in headers:
        parts.append(f"{name}: {value}")
    parts.append("\r\n")
    return "\r\n".join(parts).encode("latin-1")


def encode_request_head(method: str, target: str, headers: Headers) -> bytes:
    return encode_head(f"{method} {target} HTTP/1.1", headers)


def encode_response_head(status: int, headers: Headers, version: str = "1.1") -> bytes:
    return encode_head(f"HTTP/{version} {status} {reason_phrase(status)}", headers)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def response_has_body(method: str, status: int) -> bool:
    """RFC 9110 §6.4.1: HEAD responses, 1xx, 204 and 304 never carry content."""
    return not (method == "HEAD" or status < 200 or status in (204, 304))
