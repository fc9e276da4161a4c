"""Just enough HTTP/1.1 for the signing endpoint: one request per connection, bodies by
Content-Length, `Connection: close` on every answer.

The CA's clients are workloads fetching a certificate a few times a day and operators with curl;
a full HTTP stack would only add surface to a port that takes requests from every workload.
The head is read with a size cap and a deadline, so a slow or endless client ties up nothing
but its own connection for a bounded time.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
            411: "Length Required", 413: "Content Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented"}  # fmt: skip


class HttpError(Exception):
    """The request cannot be served as HTTP; answered with `status` and closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, target, headers) of a request head ending in CRLF CRLF."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        name, value = name.lower(), value.strip()
        if name in headers and name == "content-length" and headers[name] != value:
            raise HttpError(400, "conflicting content-length headers")
        joined = name in headers and name != "content-length"
        headers[name] = f"{headers[name]}, {value}" if joined else value
    return parts[0], parts[1], headers


def body_length(headers: dict[str, str], max_body: int) -> int:
    if "transfer-encoding" in headers:
        raise HttpError(501, "transfer-encoding is not supported; send a content-length")
    value = headers.get("content-length", "0")
    if not (value.isascii() and value.isdigit()):  # str.isdigit takes "²" and friends
        raise HttpError(400, "content-length must be a decimal number")
    if int(value) > max_body:
        raise HttpError(413, f"body over {max_body} bytes")
    return int(value)


async def read_request(reader: asyncio.StreamReader, max_body: int) -> Request:
    """One request from `reader` (whose limit must be MAX_HEAD); HttpError if it is not one."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head over {MAX_HEAD} bytes") from None
    except TimeoutError:
        raise HttpError(408, f"no complete request head within {HEAD_TIMEOUT:g} s") from None
    method, target, headers = parse_head(head)
    length = body_length(headers, max_body)
    try:
        body = await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT)
    except TimeoutError:
        raise HttpError(408, f"body not received within {BODY_TIMEOUT:g} s") from None
    return Request(method, target, headers, body)


def encode_response(status: int, body: dict[str, Any], head: bool = False) -> bytes:
    """The response; to a HEAD, its head alone (the length is still the body's)."""
    data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
    extra = 'www-authenticate: Bearer realm="remora-ca"\r\n' if status == 401 else ""
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n{extra}"
        "connection: close\r\n\r\n"
    ).encode() + (b"" if head else data)
