from __future__ import annotations

import json

import pytest
from envoy.config.core.v3 import substitution_format_string_pb2
from google.protobuf import json_format, struct_pb2

from remora.config.errors import ErrorCollector
from remora.proxy.accesslog import AccessLogRecord
from remora.proxy.accesslog.formatter import (
    DEFAULT_FORMAT,
    Formatter,
    compile_format,
    compile_json,
    compile_text,
)

EXPECTED_DEFAULT = (
    '[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 '
    '"10.0.35.28" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" '
    '"tcp://10.0.2.1:80"\n'
)


def text(fmt: str, omit_empty: bool = False) -> Formatter:
    errors = ErrorCollector()
    fn = compile_text(fmt, "p", errors, omit_empty)
    assert not errors.errors
    assert fn is not None
    return fn


def sfs(data: dict[str, object]) -> substitution_format_string_pb2.SubstitutionFormatString:
    message = substitution_format_string_pb2.SubstitutionFormatString()
    json_format.ParseDict(data, message)
    return message


def test_default_format_matches_envoys_documented_example(record: AccessLogRecord) -> None:
    fn = compile_text(DEFAULT_FORMAT, "p", ErrorCollector())
    assert fn is not None
    assert fn(record) == EXPECTED_DEFAULT


def test_default_format_with_missing_values() -> None:
    rec = AccessLogRecord(start_time=0.0, method="GET", path="/", response_code=503)
    rec.response_flags = "UF,URX"
    fn = compile_text(DEFAULT_FORMAT, "p", ErrorCollector())
    assert fn is not None
    assert fn(rec) == (
        '[1970-01-01T00:00:00.000Z] "GET / HTTP/1.1" 503 UF,URX 0 0 0 - "-" "-" "-" "-" "-"\n'
    )


def test_unset_log_format_uses_default(record: AccessLogRecord) -> None:
    fn = compile_format(sfs({}), "p", ErrorCollector())
    assert fn is not None
    assert fn(record) == EXPECTED_DEFAULT


def test_literals_and_percent_escape(record: AccessLogRecord) -> None:
    assert text("100%% done %RESPONSE_CODE%%%")(record) == "100% done 204%"
    assert text("no operators")(record) == "no operators"
    assert text("%PROTOCOL%%RESPONSE_CODE%")(record) == "HTTP/2204"
    assert text("")(record) == ""


def test_start_time_parameter_with_percent_and_truncation(record: AccessLogRecord) -> None:
    fn = text("%START_TIME(%s.%3f)% %REQ(USER-AGENT):3% %REQ(X-REQUEST-ID):8%|")
    assert fn(record) == "1460751420.310 nsq cc21d9b0|"


def test_omit_empty_values_in_text() -> None:
    fn = text("[%UPSTREAM_HOST%][%REQ(x-none)%]", omit_empty=True)
    assert fn(AccessLogRecord()) == "[][]"
    assert text("[%UPSTREAM_HOST%]")(AccessLogRecord()) == "[-]"


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%FOO%", "unknown command operator %FOO%"),
        ("%foo%", "unknown command operator %foo%"),
        ("50% off", "invalid command operator at position 2"),
        ("%DURATION", "invalid command operator at position 0"),
        ("%REQ(a%", "invalid command operator at position 0"),
        ("%DURATION(x)%", "does not take a parameter"),
    ],
)
def test_text_errors_name_path(fmt: str, message: str) -> None:
    errors = ErrorCollector()
    assert compile_text(fmt, "some.path", errors) is None
    assert len(errors.errors) == 1
    assert errors.errors[0].path == "some.path"
    assert message in errors.errors[0].message


def test_text_format_source_inline_string(record: AccessLogRecord) -> None:
    spec = sfs({"text_format_source": {"inline_string": "%REQ(:METHOD)% %RESPONSE_CODE%\n"}})
    fn = compile_format(spec, "p", ErrorCollector())
    assert fn is not None
    assert fn(record) == "POST 204\n"


def test_text_format_field(record: AccessLogRecord) -> None:
    fn = compile_format(sfs({"text_format": "%BYTES_RECEIVED%"}), "p", ErrorCollector())
    assert fn is not None
    assert fn(record) == "154"


def test_text_format_source_other_than_inline_string_rejected() -> None:
    errors = ErrorCollector()
    spec = sfs({"text_format_source": {"filename": "/etc/passwd"}})
    assert compile_format(spec, "x.log_format", errors) is None
    assert errors.errors[0].path == "x.log_format.text_format_source"
    assert "only inline_string" in errors.errors[0].message


def test_unknown_operator_path_in_inline_string() -> None:
    errors = ErrorCollector()
    spec = sfs({"text_format_source": {"inline_string": "%FOO%"}})
    assert compile_format(spec, "x.log_format", errors) is None
    assert str(errors.errors[0]) == (
        "x.log_format.text_format_source.inline_string: unknown command operator %FOO%"
    )


def test_json_format_typed_values(record: AccessLogRecord) -> None:
    spec = sfs(
        {
            "json_format": {
                "code": "%RESPONSE_CODE%",
                "method": "%REQ(:METHOD)%",
                "line": "%REQ(:METHOD)% %REQ(:PATH)%",
                "missing": "%REQ(x-none)%",
                "mixed_missing": "a=%REQ(x-none)%",
                "nested": {"dur": "%DURATION%", "host": "%UPSTREAM_HOST%"},
                "const_num": 7,
                "const_float": 1.5,
                "const_bool": True,
                "const_null": None,
                "literal": "hello",
            }
        }
    )
    fn = compile_format(spec, "p", ErrorCollector())
    assert fn is not None
    line = fn(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {
        "code": 204,
        "method": "POST",
        "line": "POST /api/v1/locations",
        "missing": None,
        "mixed_missing": "a=-",
        "nested": {"dur": 226, "host": "tcp://10.0.2.1:80"},
        "const_num": 7,
        "const_float": 1.5,
        "const_bool": True,
        "const_null": None,
        "literal": "hello",
    }


def test_json_omit_empty_values() -> None:
    spec = sfs(
        {
            "json_format": {
                "host": "%UPSTREAM_HOST%",
                "code": "%RESPONSE_CODE%",
                "n": {"x": "%ROUTE_NAME%"},
            },
            "omit_empty_values": True,
        }
    )
    fn = compile_format(spec, "p", ErrorCollector())
    assert fn is not None
    assert json.loads(fn(AccessLogRecord())) == {"code": 0}


def test_json_sort_properties(record: AccessLogRecord) -> None:
    spec = sfs(
        {
            "json_format": {"b": "%RESPONSE_CODE%", "a": "%PROTOCOL%", "c": "x"},
            "json_format_options": {"sort_properties": True},
        }
    )
    fn = compile_format(spec, "p", ErrorCollector())
    assert fn is not None
    assert fn(record) == '{"a":"HTTP/2","b":204,"c":"x"}\n'


def test_json_errors_report_every_key() -> None:
    struct = struct_pb2.Struct()
    json_format.ParseDict({"a": "%FOO%", "b": {"c": "%BAR%"}, "d": [1, 2]}, struct)
    errors = ErrorCollector()
    assert compile_json(struct, "p.json_format", errors) is None
    got = sorted(str(e) for e in errors.errors)
    assert got == [
        "p.json_format['a']: unknown command operator %FOO%",
        "p.json_format['b']['c']: unknown command operator %BAR%",
        "p.json_format['d']: lists are not supported in json_format",
    ]


def test_formatters_extension_rejected() -> None:
    spec = sfs({"text_format": "x"})
    spec.formatters.add(name="envoy.formatter.req_without_query")
    errors = ErrorCollector()
    assert compile_format(spec, "p", errors) is None
    assert errors.errors[0].path == "p.formatters"


def test_header_values_keep_latin1_text() -> None:
    rec = AccessLogRecord(request_headers=[("x-v", "caf\xe9")])
    assert text("%REQ(x-v)%")(rec) == "caf\xe9"
