"""What the router knows about gRPC: status codes both ways, grpc-timeout, grpc-message.

Plain functions of plain values, so each rule is unit-tested without sockets. The mappings are
gRPC's own (doc/http-grpc-status-mapping.md) and the one Envoy's router uses to charge a gRPC
response to its cluster's stats (`upstream_rq_<code>`).
"""

from __future__ import annotations

from remora.proxy.http.h1_codec import Headers, RawHeaders

OK = 0
DEADLINE_EXCEEDED = 4
UNKNOWN = 2

# HTTP status -> gRPC status, for a local reply to a gRPC caller (anything else is UNKNOWN).
_FROM_HTTP = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
# gRPC status -> the HTTP status it is charged as.
_TO_HTTP = {
    0: 200,
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}
# grpc-timeout units (PROTOCOL-HTTP2.md): hours, minutes, seconds, milli-, micro-, nanoseconds.
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def is_grpc(headers: Headers) -> bool:
    """A gRPC request, by Envoy's test: its content-type starts with application/grpc."""
    for name, value in headers:
        if name == "content-type":
            return value.startswith("application/grpc")
    return False


def status_for_http(status: int) -> int:
    return _FROM_HTTP.get(status, UNKNOWN)


def http_for_status(code: int) -> int:
    return _TO_HTTP.get(code, 500)


def status_in(raw: RawHeaders) -> int | None:
    """The grpc-status a response head or trailer section carries, if any (and valid)."""
    for name, value in raw:
        if name == b"grpc-status":
            return int(value) if value.isdigit() and len(value) <= 3 else None
    return None


def parse_timeout(value: str) -> float | None:
    """`grpc-timeout` in seconds: at most 8 digits and a unit; None if malformed."""
    digits, unit = value[:-1], value[-1:]
    if not digits or len(digits) > 8 or not digits.isdigit() or not digits.isascii():
        return None
    scale = _UNITS.get(unit)
    return None if scale is None else int(digits) * scale


def format_timeout(seconds: float) -> str:
    """A grpc-timeout header value for `seconds`, in whole milliseconds (rounded up)."""
    millis = max(1, int(-(-seconds * 1000 // 1)))
    return f"{min(millis, 99_999_999)}m"


def encode_message(text: bytes) -> str:
    """grpc-message percent-encoding: printable ASCII other than `%` as it is, the rest %XX."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text)
