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

_NO_FIELD = re.compile(r'Message type "([^"]+)" has no field named "([^"]+)" at "([^"]+)"')
_AT_PATH = re.compile(r' at "?(Bootstrap[^\s"]*?)"?\.?$')


def parse_text(text: str, source: str = "<config>") -> bootstrap_pb2.Bootstrap:
    """Parse YAML or JSON text (JSON is a subset of YAML) into a Bootstrap message."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError("", f"{source}: invalid YAML/JSON: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError("", f"{source}: the top level must be a mapping")])
    return parse_dict(data)


def parse_dict(data: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    message = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise ConfigErrors([_from_parse_error(exc)]) from None
    return message


def load_file(path: str | Path) -> bootstrap_pb2.Bootstrap:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigErrors([ConfigError("", f"cannot read {file}: {exc.strerror}")]) from None
    return parse_text(text, str(file))


def _strip_root(path: str) -> str:
    """`Bootstrap.static_resources.listeners[0]` -> `static_resources.listeners[0]`."""
    return path.split(".", 1)[1] if "." in path else ""


def _from_parse_error(exc: json_format.ParseError) -> ConfigError:
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
