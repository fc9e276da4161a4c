"""Admin requests and responses as plain values, so routing and handlers need no sockets.

The server turns parsed HTTP into an `AdminRequest` and an `AdminResponse` back into bytes; all
admin behaviour in between is testable as function calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

TEXT = "text/plain; charset=UTF-8"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """One admin request: method, decoded path, and query pairs in order.

    Envoy treats a bare `?usedonly` as set, so blank values are kept.
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_target(cls, method: str, target: str) -> AdminRequest:
        path, _, query = target.partition("?")
        params = tuple(parse_qsl(query, keep_blank_values=True))
        return cls(method=method.upper(), path=unquote(path), params=params)

    def param(self, name: str) -> str | None:
        """The first value of `name`, or None when absent."""
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class AdminResponse:
    """Status, body and content type, plus an action to run once the bytes are written.

    `after` exists for /quitquitquit: Envoy answers `OK` first and only then shuts down, so the
    caller sees the acknowledgement.
    """

    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()
    after: Callable[[], None] | None = None


def text(status: int, body: str, **extra: Any) -> AdminResponse:
    return AdminResponse(status=status, body=body.encode("utf-8"), content_type=TEXT, **extra)


def json_response(document: Any, status: int = 200) -> AdminResponse:
    body = json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"
    return AdminResponse(status=status, body=body.encode("utf-8"), content_type=JSON)
