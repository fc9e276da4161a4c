"""Rendering of %START_TIME%: Envoy's default ISO 8601 form and its strftime-like custom formats.

Envoy formats in UTC and extends strftime with `%s` (epoch seconds), `%f`/`%1f`..`%9f` (fractional
seconds, nine digits by default) and absl's `%E<n>S` (seconds with n fractional digits). The custom
format is split once into strftime chunks and fractional-second fields; the strftime part depends
only on the whole second, so its output is cached per second, which is the common case under load.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

TimeFormatter = Callable[[float], str]

# `%%` must be consumed first, so that `%%s` stays a literal "%s" for strftime.
_TOKEN = re.compile(r"%(%|s|[1-9]?f|E[1-9]S)")


def _split(timestamp: float) -> tuple[int, int]:
    """Whole seconds and nanoseconds; rounding to microseconds first hides float noise."""
    micros = round(timestamp * 1_000_000)
    seconds, frac_us = divmod(micros, 1_000_000)
    return seconds, frac_us * 1000


def default_formatter() -> TimeFormatter:
    """`2016-04-15T20:17:00.310Z`: Envoy's default, millisecond precision, UTC."""
    cache: list[object] = [None, ""]

    def render(timestamp: float) -> str:
        seconds, nanos = _split(timestamp)
        if cache[0] != seconds:
            cache[0] = seconds
            cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{cache[1]}.{nanos // 1_000_000:03d}Z"

    return render


def compile_formatter(spec: str | None) -> TimeFormatter:
    """Compile a START_TIME parameter; None or empty means Envoy's default format."""
    if not spec:
        return default_formatter()
    # Pieces are strftime chunks (str) or sub-second fields (callables of seconds, nanoseconds).
    pieces: list[str | Callable[[int, int], str]] = []
    chunk: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(spec):
        chunk.append(spec[pos : match.start()])
        pos = match.end()
        token = match.group(1)
        if token == "%":
            chunk.append("%%")
            continue
        pieces.append("".join(chunk))
        chunk = []
        pieces.append(_field(token))
    chunk.append(spec[pos:])
    pieces.append("".join(chunk))
    return _assemble([p for p in pieces if p != ""])


def _field(token: str) -> Callable[[int, int], str]:
    if token == "s":
        return lambda seconds, _nanos: str(seconds)
    if token.startswith("E"):
        digits = int(token[1])
        divisor = 10 ** (9 - digits)
        return lambda seconds, nanos: (
            f"{time.gmtime(seconds).tm_sec:02d}.{nanos // divisor:0{digits}d}"
        )
    digits = int(token[0]) if len(token) == 2 else 9
    divisor = 10 ** (9 - digits)
    return lambda _seconds, nanos: f"{nanos // divisor:0{digits}d}"


def _assemble(pieces: list[str | Callable[[int, int], str]]) -> TimeFormatter:
    strftime_parts = [p for p in pieces if isinstance(p, str)]
    cache_second: list[int | None] = [None]
    cache_text: list[list[str]] = [[]]

    def render(timestamp: float) -> str:
        seconds, nanos = _split(timestamp)
        if cache_second[0] != seconds:
            utc = time.gmtime(seconds)
            cache_second[0] = seconds
            cache_text[0] = [time.strftime(part, utc) for part in strftime_parts]
        texts = iter(cache_text[0])
        return "".join(next(texts) if isinstance(p, str) else p(seconds, nanos) for p in pieces)

    return render
