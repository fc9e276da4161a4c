"""Compiles Envoy's SubstitutionFormatString into a function from a record to one log line.

The format is parsed once into literals and operator functions. A text line is then one join over a
prepared list; a JSON line is one dict built from prepared entries and one `json.dumps`. Nothing on
the per-request path parses, looks up an operator name or touches protobuf.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from envoy.config.core.v3 import substitution_format_string_pb2
from google.protobuf import struct_pb2

from remora.config.errors import ErrorCollector
from remora.proxy.accesslog.operators import OperatorError, Value, ValueFn, compile_operator
from remora.proxy.accesslog.record import AccessLogRecord

Formatter = Callable[[AccessLogRecord], str]
TextFn = Callable[[AccessLogRecord], str]
JsonFn = Callable[[AccessLogRecord], object]

# Envoy's documented default format for HTTP access logs (note the trailing newline).
DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n'
)

# `%NAME%`, `%NAME(param)%`, `%NAME(param):N%`, `%NAME:N%`. The parameter ends at the first `)`
# that is followed by the end of the operator, so START_TIME formats may contain `%` and `(`.
_COMMAND = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)(?:\((.*?)\))?(?::([0-9]+))?%", re.DOTALL)

Segment = str | ValueFn


def parse(text: str) -> list[Segment]:
    """Split a format string into literals and compiled operators; raises OperatorError."""
    segments: list[Segment] = []
    literal: list[str] = []
    pos = 0
    while True:
        start = text.find("%", pos)
        if start < 0:
            literal.append(text[pos:])
            break
        literal.append(text[pos:start])
        if text.startswith("%%", start):
            literal.append("%")
            pos = start + 2
            continue
        match = _COMMAND.match(text, start)
        if match is None:
            raise OperatorError(
                f"invalid command operator at position {start} (write %% for a literal %)"
            )
        name, param, max_length = match.groups()
        fn = compile_operator(name, param, int(max_length) if max_length is not None else None)
        if literal:
            segments.append("".join(literal))
            literal = []
        segments.append(fn)
        pos = match.end()
    joined = "".join(literal)
    if joined:
        segments.append(joined)
    return [s for s in segments if s != ""]


def _as_text(fn: ValueFn, empty: str) -> TextFn:
    def render(record: AccessLogRecord) -> str:
        value = fn(record)
        if value is None or value == "":
            return empty
        return value if isinstance(value, str) else str(value)

    return render


def _text_function(segments: list[Segment], empty: str) -> TextFn:
    head = ""
    index = 0
    if segments and isinstance(segments[0], str):
        head = segments[0]
        index = 1
    pairs: list[tuple[TextFn, str]] = []
    for segment in segments[index:]:
        if isinstance(segment, str):
            fn, _ = pairs[-1]
            pairs[-1] = (fn, segment)
        else:
            pairs.append((_as_text(segment, empty), ""))
    if not pairs:
        return lambda _record: head

    def render(record: AccessLogRecord) -> str:
        parts = [head]
        for fn, tail in pairs:
            parts.append(fn(record))
            parts.append(tail)
        return "".join(parts)

    return render


def compile_text(
    text: str, path: str, errors: ErrorCollector, omit_empty: bool = False
) -> Formatter | None:
    try:
        segments = parse(text)
    except OperatorError as exc:
        errors.add(path, str(exc))
        return None
    return _text_function(segments, "" if omit_empty else "-")


def _json_value(
    value: struct_pb2.Value, path: str, errors: ErrorCollector, omit_empty: bool
) -> JsonFn | None:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        try:
            segments = parse(value.string_value)
        except OperatorError as exc:
            errors.add(path, str(exc))
            return None
        if len(segments) == 1 and not isinstance(segments[0], str):
            # A lone operator keeps its type: numbers stay numbers, unset becomes null.
            single: Callable[[AccessLogRecord], Value] = segments[0]
            return single
        return _text_function(segments, "" if omit_empty else "-")
    if kind == "struct_value":
        return _json_struct(value.struct_value, path, errors, omit_empty)
    if kind == "number_value":
        number = value.number_value
        constant: object = int(number) if number.is_integer() else number
        return lambda _record: constant
    if kind == "bool_value":
        flag = value.bool_value
        return lambda _record: flag
    if kind == "null_value":
        return lambda _record: None
    errors.add(path, "lists are not supported in json_format")
    return None


def _json_struct(
    struct: struct_pb2.Struct, path: str, errors: ErrorCollector, omit_empty: bool
) -> JsonFn | None:
    entries: list[tuple[str, JsonFn]] = []
    ok = True
    for key, value in struct.fields.items():
        fn = _json_value(value, f"{path}[{key!r}]", errors, omit_empty)
        if fn is None:
            ok = False
        else:
            entries.append((key, fn))
    if not ok:
        return None

    def render(record: AccessLogRecord) -> object:
        out: dict[str, object] = {}
        for key, fn in entries:
            item = fn(record)
            if omit_empty and (item is None or item == "" or item == {}):
                continue
            out[key] = item
        return out

    return render


def compile_json(
    struct: struct_pb2.Struct,
    path: str,
    errors: ErrorCollector,
    omit_empty: bool = False,
    sort_keys: bool = False,
) -> Formatter | None:
    build = _json_struct(struct, path, errors, omit_empty)
    if build is None:
        return None
    dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=sort_keys).encode

    def render(record: AccessLogRecord) -> str:
        return dumps(build(record)) + "\n"

    return render


def compile_format(
    spec: substitution_format_string_pb2.SubstitutionFormatString,
    path: str,
    errors: ErrorCollector,
) -> Formatter | None:
    """Compile a `log_format`; `path` names the SubstitutionFormatString field itself."""
    if len(spec.formatters):
        errors.add(f"{path}.formatters", "not supported: formatter extensions")
        return None
    omit = spec.omit_empty_values
    which = spec.WhichOneof("format")
    if which == "text_format":
        return compile_text(spec.text_format, f"{path}.text_format", errors, omit)
    if which == "text_format_source":
        source = spec.text_format_source
        source_path = f"{path}.text_format_source"
        specifier = source.WhichOneof("specifier")
        if specifier != "inline_string":
            what = specifier or "nothing"
            errors.add(source_path, f"only inline_string is supported (got {what})")
            return None
        return compile_text(source.inline_string, f"{source_path}.inline_string", errors, omit)
    if which == "json_format":
        sort_keys = spec.json_format_options.sort_properties
        return compile_json(spec.json_format, f"{path}.json_format", errors, omit, sort_keys)
    return compile_text(DEFAULT_FORMAT, path, errors, omit)
