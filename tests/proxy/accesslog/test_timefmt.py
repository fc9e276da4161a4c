from __future__ import annotations

import pytest

from remora.proxy.accesslog.timefmt import compile_formatter, default_formatter

T = 1460751420.310  # 2016-04-15T20:17:00.310Z


def test_default_is_iso8601_utc_with_milliseconds() -> None:
    render = default_formatter()
    assert render(T) == "2016-04-15T20:17:00.310Z"
    # The per-second cache must not leak into the next second or the next millisecond.
    assert render(T + 0.001) == "2016-04-15T20:17:00.311Z"
    assert render(T + 1.5) == "2016-04-15T20:17:01.810Z"
    assert render(0.0) == "1970-01-01T00:00:00.000Z"


def test_empty_spec_means_default() -> None:
    assert compile_formatter(None)(T) == "2016-04-15T20:17:00.310Z"
    assert compile_formatter("")(T) == "2016-04-15T20:17:00.310Z"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("%Y/%m/%dT%H:%M:%S%z %s", "2016/04/15T20:17:00+0000 1460751420"),
        ("%s.%3f", "1460751420.310"),
        ("%s.%6f", "1460751420.310000"),
        ("%s.%9f", "1460751420.310000000"),
        ("%s.%f", "1460751420.310000000"),
        ("%s.%1f", "1460751420.3"),
        ("%H:%M:%E3S", "20:17:00.310"),
        ("100%% at %s", "100% at 1460751420"),
        ("%%s", "%s"),
        ("plain", "plain"),
    ],
)
def test_custom_formats(spec: str, expected: str) -> None:
    assert compile_formatter(spec)(T) == expected


def test_custom_format_cache_follows_seconds() -> None:
    render = compile_formatter("%M:%S.%3f")
    assert render(T) == "17:00.310"
    assert render(T + 61.2) == "18:01.510"
