from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from envoy.config.accesslog.v3 import accesslog_pb2
from google.protobuf import json_format

import remora.config.typeregistry  # noqa: F401  (resolves the Router @type below)
from remora.config.errors import ErrorCollector
from remora.config.support import check
from remora.proxy.accesslog import AccessLogger, AccessLogRecord, compile_access_logs

STDOUT = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
STDERR = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
FILE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
PATH = "listeners[0].filter_chains[0].filters[0].typed_config.access_log"


def entries(*configs: dict[str, object]) -> list[accesslog_pb2.AccessLog]:
    out = []
    for config in configs:
        message = accesslog_pb2.AccessLog()
        json_format.ParseDict(config, message)
        out.append(message)
    return out


def compile_ok(*configs: dict[str, object]) -> tuple[AccessLogger, ...]:
    errors = ErrorCollector()
    loggers = compile_access_logs(entries(*configs), PATH, errors)
    assert [str(e) for e in errors.errors] == []
    return loggers


def compile_err(*configs: dict[str, object]) -> list[str]:
    errors = ErrorCollector()
    assert compile_access_logs(entries(*configs), PATH, errors) == ()
    return [str(e) for e in errors.errors]


async def test_file_logger_default_format(tmp_path: Path, record: AccessLogRecord) -> None:
    target = tmp_path / "access.log"
    (logger,) = compile_ok(
        {"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE, "path": str(target)}}
    )
    logger.log(record)
    logger.log(record)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    lines = target.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204')
    logger.close()


async def test_file_logger_json_and_close_flushes(tmp_path: Path, record: AccessLogRecord) -> None:
    target = tmp_path / "access.json"
    (logger,) = compile_ok(
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": FILE,
                "path": str(target),
                "log_format": {
                    "json_format": {"code": "%RESPONSE_CODE%", "ua": "%REQ(USER-AGENT)%"},
                    "content_type": "application/json",
                },
            },
        }
    )
    logger.log(record)
    logger.close()  # no loop iteration happened: close must write what is pending
    assert json.loads(target.read_text()) == {"code": 204, "ua": "nsq2http"}


def test_file_logger_legacy_fields(tmp_path: Path, record: AccessLogRecord) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    la, lb = compile_ok(
        {"typed_config": {"@type": FILE, "path": str(a), "format": "%RESPONSE_CODE%\n"}},
        {"typed_config": {"@type": FILE, "path": str(b), "json_format": {"m": "%REQ(:METHOD)%"}}},
    )
    la.log(record)
    lb.log(record)
    la.close()
    lb.close()
    assert a.read_text() == "204\n"
    assert json.loads(b.read_text()) == {"m": "POST"}


def test_stdout_logger(capfd: pytest.CaptureFixture[str], record: AccessLogRecord) -> None:
    (logger,) = compile_ok(
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": STDOUT,
                "log_format": {
                    "text_format_source": {"inline_string": "%REQ(:METHOD)% %RESPONSE_CODE%\n"}
                },
            },
        }
    )
    logger.log(record)
    logger.close()
    out, err = capfd.readouterr()
    assert out == "POST 204\n"
    assert err == ""


async def test_stdout_default_format_in_loop(
    capfd: pytest.CaptureFixture[str], record: AccessLogRecord
) -> None:
    (logger,) = compile_ok({"typed_config": {"@type": STDOUT}})
    logger.log(record)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert capfd.readouterr().out.startswith('[2016-04-15T20:17:00.310Z] "POST')
    logger.close()


def test_stderr_logger(capfd: pytest.CaptureFixture[str], record: AccessLogRecord) -> None:
    (logger,) = compile_ok(
        {"typed_config": {"@type": STDERR, "log_format": {"text_format": "%PROTOCOL%\n"}}}
    )
    logger.log(record)
    logger.close()
    assert capfd.readouterr().err == "HTTP/2\n"


def test_tcp_record_with_default_format(capfd: pytest.CaptureFixture[str]) -> None:
    (logger,) = compile_ok({"typed_config": {"@type": STDOUT}})
    tcp = AccessLogRecord(
        start_time=0.0, protocol=None, bytes_received=5, bytes_sent=7, duration_ms=3.0
    )
    tcp.upstream_host = "127.0.0.1:9000"
    logger.log(tcp)
    logger.close()
    assert capfd.readouterr().out == (
        '[1970-01-01T00:00:00.000Z] "- - -" 0 - 5 7 3 - "-" "-" "-" "-" "127.0.0.1:9000"\n'
    )


def test_unknown_operator_error_names_full_path() -> None:
    errors = compile_err(
        {
            "typed_config": {
                "@type": STDOUT,
                "log_format": {"text_format_source": {"inline_string": "%FOO%"}},
            }
        }
    )
    assert errors == [
        f"{PATH}[0].typed_config.log_format.text_format_source.inline_string: "
        "unknown command operator %FOO%"
    ]


def test_all_errors_reported_and_opened_files_closed(tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    errors = compile_err(
        {"typed_config": {"@type": FILE, "path": str(good)}},
        {"typed_config": {"@type": FILE, "path": str(tmp_path / "no" / "such" / "dir.log")}},
        {"typed_config": {"@type": FILE, "path": ""}},
        {"name": "x"},
        {"typed_config": {"@type": STDOUT, "log_format": {"json_format": {"a": "%NOPE%"}}}},
    )
    assert errors[0].startswith(f"{PATH}[1].typed_config.path: cannot open ")
    assert "No such file or directory" in errors[0]
    assert errors[1] == f"{PATH}[2].typed_config.path: must name the file to append to"
    assert errors[2].startswith(f"{PATH}[3]: typed_config is required")
    assert errors[3] == (
        f"{PATH}[4].typed_config.log_format.json_format['a']: unknown command operator %NOPE%"
    )
    assert len(errors) == 4
    assert good.exists()


def test_unsupported_logger_type() -> None:
    errors = compile_err(
        {
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            }
        }
    )
    assert errors == [
        f"{PATH}[0].typed_config: not supported: access logger @type "
        "envoy.extensions.filters.http.router.v3.Router"
    ]


def test_registered_fields_pass_the_walker(tmp_path: Path) -> None:
    messages = entries(
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": FILE,
                "path": str(tmp_path / "x.log"),
                "log_format": {
                    "text_format_source": {"inline_string": "%DURATION%\n"},
                    "omit_empty_values": True,
                    "content_type": "text/plain",
                },
            },
        },
        {
            "typed_config": {
                "@type": STDOUT,
                "log_format": {
                    "json_format": {"a": "%DURATION%"},
                    "json_format_options": {"sort_properties": True},
                },
            }
        },
        {"typed_config": {"@type": STDOUT, "log_format": {"text_format": "x"}}},
    )
    for index, message in enumerate(messages):
        errors, warnings = check(message, f"access_log[{index}]")
        assert errors == [] and warnings == []


def test_filter_is_rejected_by_the_walker() -> None:
    (message,) = entries(
        {
            "typed_config": {"@type": STDOUT},
            "filter": {"status_code_filter": {"comparison": {"op": "GE"}}},
        }
    )
    errors, _ = check(message, "access_log[0]")
    assert [e.path for e in errors] == ["access_log[0].filter"]
    assert "not supported" in errors[0].message
