"""Compiles `access_log` entries (envoy.config.accesslog.v3.AccessLog) into AccessLoggers.

Dispatch is on the typed_config's message type, as in Envoy; the `name` is informational. Files are
opened here, at config time, so that an unwritable path is a config error with its field path rather
than a silent loss of logs later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2

from remora.config.errors import ConfigError, ErrorCollector
from remora.config.support import register, unpack_any
from remora.proxy.accesslog.formatter import (
    DEFAULT_FORMAT,
    Formatter,
    compile_format,
    compile_json,
    compile_text,
)
from remora.proxy.accesslog.logger import AccessLogger
from remora.proxy.accesslog.sinks import FdSink

register("envoy.config.accesslog.v3.AccessLog", {"name", "typed_config"})
register("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", {"log_format"})
register("envoy.extensions.access_loggers.stream.v3.StderrAccessLog", {"log_format"})
register(
    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    {"path", "log_format", "format", "json_format", "typed_json_format"},
)
register(
    "envoy.config.core.v3.SubstitutionFormatString",
    {
        "text_format",
        "text_format_source",
        "json_format",
        "omit_empty_values",
        "content_type",
        "json_format_options",
    },
)
register("envoy.config.core.v3.JsonFormatOptions", {"sort_properties"})
register("envoy.config.core.v3.DataSource", {"inline_string"})


def compile_access_logs(
    logs: Sequence[accesslog_pb2.AccessLog], path: str, errors: ErrorCollector
) -> tuple[AccessLogger, ...]:
    """Compile every entry of a repeated `access_log` field found at `path`.

    On any error nothing is returned and files opened by this call are closed again, so a rejected
    config leaks no descriptors.
    """
    loggers: list[AccessLogger] = []
    failed = False
    for index, entry in enumerate(logs):
        logger = _compile_one(entry, f"{path}[{index}]", errors)
        if logger is None:
            failed = True
        else:
            loggers.append(logger)
    if failed:
        for logger in loggers:
            logger.close()
        return ()
    return tuple(loggers)


def _compile_one(
    entry: accesslog_pb2.AccessLog, path: str, errors: ErrorCollector
) -> AccessLogger | None:
    if not entry.HasField("typed_config"):
        errors.add(path, "typed_config is required (stdout, stderr or file access logger)")
        return None
    config_path = f"{path}.typed_config"
    try:
        config = unpack_any(entry.typed_config, config_path)
    except ConfigError as exc:
        errors.extend([exc])
        return None
    name = entry.name or config.DESCRIPTOR.full_name
    if isinstance(config, stream_pb2.StdoutAccessLog | stream_pb2.StderrAccessLog):
        format_record = _stream_format(config, config_path, errors)
        if format_record is None:
            return None
        fd = 1 if isinstance(config, stream_pb2.StdoutAccessLog) else 2
        return AccessLogger(name, format_record, FdSink(fd, f"fd {fd}", owned=False))
    if isinstance(config, file_pb2.FileAccessLog):
        return _file_logger(name, config, config_path, errors)
    errors.add(config_path, f"not supported: access logger @type {config.DESCRIPTOR.full_name}")
    return None


def _stream_format(
    config: stream_pb2.StdoutAccessLog | stream_pb2.StderrAccessLog,
    path: str,
    errors: ErrorCollector,
) -> Formatter | None:
    if config.HasField("log_format"):
        return compile_format(config.log_format, f"{path}.log_format", errors)
    return compile_text(DEFAULT_FORMAT, path, errors)


def _file_logger(
    name: str, config: file_pb2.FileAccessLog, path: str, errors: ErrorCollector
) -> AccessLogger | None:
    which = config.WhichOneof("access_log_format")
    format_record: Formatter | None
    if which == "log_format":
        format_record = compile_format(config.log_format, f"{path}.log_format", errors)
    elif which == "format":
        format_record = compile_text(config.format, f"{path}.format", errors)
    elif which in ("json_format", "typed_json_format"):
        struct = config.json_format if which == "json_format" else config.typed_json_format
        format_record = compile_json(struct, f"{path}.{which}", errors)
    else:
        format_record = compile_text(DEFAULT_FORMAT, path, errors)
    if not config.path:
        errors.add(f"{path}.path", "must name the file to append to")
        return None
    if format_record is None:
        return None
    try:
        sink = FdSink.open_file(config.path)
    except OSError as exc:
        reason = exc.strerror or os.strerror(exc.errno or 0)
        errors.add(f"{path}.path", f"cannot open {config.path!r} for appending: {reason}")
        return None
    return AccessLogger(name, format_record, sink)
