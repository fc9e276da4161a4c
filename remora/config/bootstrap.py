"""Loads an Envoy v3 bootstrap (YAML or JSON) into the real `Bootstrap` protobuf message.

Parsing into the generated message is what makes a misspelled field an error: `json_format` knows
every field of every message. Its errors are rewritten to lead with the field path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

import remora.config.typeregistry  # noqa: F401  (registers typed_config types)
from remora.config.errors import ConfigError, ConfigErrors
from remora.config.parse_errors import PARSE_FAILURES, find_errors
from remora.config.yamlload import load_yaml, read_text, yaml_error

_NO_FIELD = re.compile(r'Message type "([^"]+)" has no field named "([^"]+)" at "([^"]+)"')
_AT_PATH = re.compile(r' at "?(Bootstrap[^\s"]*?)"?\.?$')


def parse_text(text: str, source: str = "<config>") -> bootstrap_pb2.Bootstrap:
    """Parse YAML or JSON text into a Bootstrap message; raises ConfigErrors listing every
    parse error."""
    message, errors = parse_text_lenient(text, source)
    if errors:
        raise ConfigErrors(errors)
    return message


def parse_text_lenient(
    text: str, source: str = "<config>"
) -> tuple[bootstrap_pb2.Bootstrap, list[ConfigError]]:
    """(the message without the values that failed to parse, every parse error); a YAML error
    or a top level that is not a mapping still raises, since nothing of it can be used."""
    try:
        data = load_yaml(text, source)
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError("", yaml_error(exc, source))]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError("", f"{source}: the top level must be a mapping")])
    return parse_dict_lenient(data)


def parse_dict(data: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    message, errors = parse_dict_lenient(data)
    if errors:
        raise ConfigErrors(errors)
    return message


def parse_dict_lenient(
    data: dict[str, Any],
) -> tuple[bootstrap_pb2.Bootstrap, list[ConfigError]]:
    message = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
        return message, []
    except PARSE_FAILURES:  # protobuf raises more than ParseError for odd values (`@type: 3`)
        pass
    # The strict parse stops at the first problem; find them all (importing any Envoy type the
    # config names on the way), then parse what is left.
    cleaned, errors = find_errors(data, bootstrap_pb2.Bootstrap.DESCRIPTOR)
    message = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(cleaned, message, ignore_unknown_fields=False)
    except PARSE_FAILURES as exc:  # a case the walk does not know: report protobuf's
        return bootstrap_pb2.Bootstrap(), [*errors, _from_parse_error(exc)]
    return message, errors


def load_file(path: str | Path) -> bootstrap_pb2.Bootstrap:
    message, errors = load_file_lenient(path)
    if errors:
        raise ConfigErrors(errors)
    return message


def load_file_lenient(path: str | Path) -> tuple[bootstrap_pb2.Bootstrap, list[ConfigError]]:
    file = Path(path)
    try:
        text = read_text(file)
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError("", yaml_error(exc, str(file)))]) from None
    except OSError as exc:
        raise ConfigErrors([ConfigError("", f"cannot read {file}: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError("", f"{file}: not UTF-8 text ({exc.reason})")]) from None
    return parse_text_lenient(text, str(file))


def _strip_root(path: str) -> str:
    """`Bootstrap.static_resources.listeners[0]` -> `static_resources.listeners[0]`."""
    return path.split(".", 1)[1] if "." in path else ""


def _from_parse_error(exc: Exception) -> ConfigError:
    # json_format nests messages as "Failed to parse X field: ..."; the innermost part is the cause.
    text = str(exc)
    match = _NO_FIELD.search(text)
    if match:
        message_type, field, at = match.groups()
        path = _strip_root(at)
        field_path = f"{path}.{field}" if path else field
        return ConfigError(field_path, f"unknown field {field!r} in {message_type}")
    inner = text.rsplit("field: ", 1)[-1].strip()
    at_match = _AT_PATH.search(inner)
    path = _strip_root(at_match.group(1)).rstrip(".") if at_match else ""
    detail = _AT_PATH.sub("", inner).rstrip(".")
    return ConfigError(path, detail)
