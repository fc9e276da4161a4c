"""The router's gRPC rules as plain functions."""

from __future__ import annotations

import pytest

from remora.proxy.http import grpc


def test_status_mappings_both_ways() -> None:
    assert [grpc.status_for_http(s) for s in (400, 401, 403, 404, 429, 502, 503, 504)] == [
        13, 16, 7, 12, 14, 14, 14, 14,
    ]  # fmt: skip
    assert grpc.status_for_http(500) == grpc.UNKNOWN
    assert grpc.http_for_status(0) == 200
    assert grpc.http_for_status(5) == 404
    assert grpc.http_for_status(14) == 503
    assert grpc.http_for_status(99) == 500


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1S", 1.0), ("250m", 0.25), ("2M", 120.0), ("1H", 3600.0), ("5000u", 0.005),
     ("100n", 1e-7), ("99999999S", 99999999.0)],
)  # fmt: skip
def test_grpc_timeout_parses(value: str, seconds: float) -> None:
    assert grpc.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "1", "1s", "-1S", "123456789S", "1.5S", "\u0661S"])
def test_malformed_grpc_timeouts_are_ignored(value: str) -> None:
    assert grpc.parse_timeout(value) is None


def test_timeout_and_message_encoding() -> None:
    assert grpc.format_timeout(0.25) == "250m"
    assert grpc.format_timeout(0.0001) == "1m"
    assert grpc.format_timeout(1e9) == "99999999m"
    assert grpc.encode_message(b"no healthy upstream") == "no healthy upstream"
    assert grpc.encode_message("50% ünïcode\n".encode()) == "50%25 %C3%BCn%C3%AFcode%0A"
    assert grpc.status_in([(b"grpc-status", b"7")]) == 7
    assert grpc.status_in([(b"grpc-status", b"x")]) is None
    assert grpc.status_in([]) is None
    assert grpc.is_grpc([("content-type", "application/grpc+proto")])
    assert not grpc.is_grpc([("content-type", "application/json")])
