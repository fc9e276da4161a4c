from __future__ import annotations

import socket

import pytest

from remora.proxy.accesslog import AccessLogRecord
from remora.proxy.accesslog.operators import OperatorError, compile_operator


def op(name: str, param: str | None = None, max_length: int | None = None) -> object:
    return compile_operator(name, param, max_length)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("RESPONSE_CODE", 204),
        ("DURATION", 226),
        ("BYTES_RECEIVED", 154),
        ("BYTES_SENT", 0),
        ("PROTOCOL", "HTTP/2"),
        ("UPSTREAM_HOST", "tcp://10.0.2.1:80"),
        ("UPSTREAM_CLUSTER", "locations_cluster"),
        ("ROUTE_NAME", "loc_route"),
        ("DOWNSTREAM_REMOTE_ADDRESS", "10.0.35.28:51234"),
        ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "10.0.35.28"),
        ("DOWNSTREAM_REMOTE_PORT", 51234),
        ("DOWNSTREAM_LOCAL_ADDRESS", "10.0.0.5:10000"),
        ("DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "10.0.0.5"),
        ("DOWNSTREAM_LOCAL_PORT", 10000),
        ("START_TIME", "2016-04-15T20:17:00.310Z"),
        ("HOSTNAME", socket.gethostname()),
    ],
)
def test_simple_operators(record: AccessLogRecord, name: str, expected: object) -> None:
    fn = compile_operator(name, None, None)
    assert fn(record) == expected


def test_unset_values_are_none() -> None:
    empty = AccessLogRecord(protocol=None)
    for name in [
        "PROTOCOL",
        "UPSTREAM_HOST",
        "UPSTREAM_CLUSTER",
        "ROUTE_NAME",
        "RESPONSE_FLAGS",
        "REQUEST_DURATION",
        "RESPONSE_DURATION",
        "DOWNSTREAM_REMOTE_ADDRESS",
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
        "DOWNSTREAM_REMOTE_PORT",
        "CONNECTION_ID",
    ]:
        assert compile_operator(name, None, None)(empty) is None, name
    # Counters and the response code are always numbers; 0 means "no response" as in Envoy.
    assert compile_operator("RESPONSE_CODE", None, None)(empty) == 0
    assert compile_operator("BYTES_SENT", None, None)(empty) == 0


def test_durations_and_flags() -> None:
    rec = AccessLogRecord(
        duration_ms=12.9,
        request_duration_ms=3.2,
        response_duration_ms=7.99,
        response_flags="UF,URX",
        connection_id=42,
    )
    assert compile_operator("DURATION", None, None)(rec) == 12
    assert compile_operator("REQUEST_DURATION", None, None)(rec) == 3
    assert compile_operator("RESPONSE_DURATION", None, None)(rec) == 7
    assert compile_operator("RESPONSE_FLAGS", None, None)(rec) == "UF,URX"
    assert compile_operator("CONNECTION_ID", None, None)(rec) == 42


def test_ipv6_addresses() -> None:
    rec = AccessLogRecord(downstream_remote_address="[::1]:8080")
    assert compile_operator("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", None, None)(rec) == "::1"
    assert compile_operator("DOWNSTREAM_REMOTE_PORT", None, None)(rec) == 8080


def test_request_headers_case_insensitive_and_first_wins() -> None:
    rec = AccessLogRecord(request_headers=[("x-a", "1"), ("x-a", "2"), ("x-b", "")])
    assert compile_operator("REQ", "X-A", None)(rec) == "1"
    assert compile_operator("REQUEST_HEADER", "x-a", None)(rec) == "1"
    assert compile_operator("REQ", "X-Missing", None)(rec) is None
    assert compile_operator("REQ", "x-b", None)(rec) == ""


def test_pseudo_headers_read_record_attributes(record: AccessLogRecord) -> None:
    assert compile_operator("REQ", ":METHOD", None)(record) == "POST"
    assert compile_operator("REQ", ":path", None)(record) == "/api/v1/locations"
    assert compile_operator("REQ", ":AUTHORITY", None)(record) == "locations"
    assert compile_operator("REQ", "host", None)(record) == "locations"
    assert compile_operator("REQ", ":scheme", None)(record) == "http"
    assert compile_operator("RESP", ":status", None)(record) == "204"
    assert compile_operator("RESP", ":status", None)(AccessLogRecord()) is None


def test_tcp_record_has_no_request_attributes() -> None:
    tcp = AccessLogRecord(protocol=None, bytes_received=10, bytes_sent=20)
    assert compile_operator("REQ", ":method", None)(tcp) is None
    assert compile_operator("REQ", ":path", None)(tcp) is None


def test_alternative_header() -> None:
    fn = compile_operator("REQ", "X-ENVOY-ORIGINAL-PATH?:PATH", None)
    assert fn(AccessLogRecord(path="/rewritten")) == "/rewritten"
    original = AccessLogRecord(path="/rewritten", request_headers=[("x-envoy-original-path", "/o")])
    assert fn(original) == "/o"
    assert fn(AccessLogRecord()) is None


def test_response_headers(record: AccessLogRecord) -> None:
    assert compile_operator("RESP", "X-Envoy-Upstream-Service-Time", None)(record) == "100"
    assert compile_operator("RESPONSE_HEADER", "server", None)(record) == "demo"
    assert compile_operator("RESP", "x-nope?server", None)(record) == "demo"


def test_truncation(record: AccessLogRecord) -> None:
    assert compile_operator("REQ", "user-agent", 3)(record) == "nsq"
    assert compile_operator("REQ", "x-missing", 3)(record) is None
    assert compile_operator("RESP", "server", 100)(record) == "demo"


@pytest.mark.parametrize(
    ("name", "param", "max_length", "message"),
    [
        ("FOO", None, None, "unknown command operator %FOO%"),
        ("DURATION", "x", None, "%DURATION% does not take a parameter"),
        ("REQ", None, None, "%REQ% requires a parameter"),
        ("REQ", "", None, "%REQ% requires a parameter"),
        ("REQ", "a?b?c", None, "more than one alternative header"),
        ("REQ", "a?", None, "empty header name"),
        ("DURATION", None, 3, "%DURATION% does not support a maximum length"),
    ],
)
def test_operator_errors(
    name: str, param: str | None, max_length: int | None, message: str
) -> None:
    with pytest.raises(OperatorError, match=message.replace("?", r"\?")):
        op(name, param, max_length)
