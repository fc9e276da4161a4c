"""The allowlist of Envoy fields remora implements.

Envoy's API is vast; silently ignoring a field a user set would make remora behave differently from
what the config says. So every compiler registers the fields it really implements, and one walk over
the parsed message rejects anything else as `not supported: <path>`. Fields that are safe to accept
but have no effect here are registered as ignored, with the reason, and produce a warning instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import any_pb2, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from udpa.type.v1 import typed_struct_pb2 as udpa_typed_struct_pb2
from xds.type.v3 import typed_struct_pb2 as xds_typed_struct_pb2

from remora.config.errors import ConfigError
from remora.config.typeregistry import find_type

# Message types accepted whole: well-known value wrappers carry no nested config.
_LEAF_TYPES = frozenset(
    {
        "google.protobuf.Duration",
        "google.protobuf.Timestamp",
        "google.protobuf.UInt32Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.Int64Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.BytesValue",
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Empty",
    }
)

_supported: dict[str, frozenset[str]] = {}
_ignored: dict[str, dict[str, str]] = {}


def register(message_type: str, fields: Iterable[str]) -> None:
    """Declare that remora implements `fields` of `message_type` (full proto name)."""
    _supported[message_type] = _supported.get(message_type, frozenset()) | frozenset(fields)


def register_ignored(message_type: str, field: str, reason: str) -> None:
    """Declare a field that is accepted with a warning because it has no effect in remora."""
    _ignored.setdefault(message_type, {})[field] = reason
    _supported.setdefault(message_type, frozenset())


def supported_fields() -> dict[str, frozenset[str]]:
    return dict(_supported)


def ignored_fields() -> dict[str, dict[str, str]]:
    return {k: dict(v) for k, v in _ignored.items()}


# Envoy's wrappers for an extension's config written as JSON (a Struct) under its own type URL.
TYPED_STRUCTS: dict[str, type[Message]] = {
    "udpa.type.v1.TypedStruct": udpa_typed_struct_pb2.TypedStruct,
    "xds.type.v3.TypedStruct": xds_typed_struct_pb2.TypedStruct,
}


def _typed_struct(value: any_pb2.Any) -> Any | None:
    """The TypedStruct an `Any` holds (both kinds have `type_url` and `value`), or None."""
    cls = TYPED_STRUCTS.get(value.type_url.rpartition("/")[2])
    if cls is None:
        return None
    typed = cls()
    return typed if value.Unpack(typed) else None


def any_type_name(value: any_pb2.Any) -> str:
    """The full name of the message an `Any` holds, looking inside a TypedStruct."""
    typed = _typed_struct(value)
    if typed is not None:
        return str(typed.type_url).rpartition("/")[2]
    return value.type_url.rpartition("/")[2]


def _unpack_typed_struct(value: any_pb2.Any, path: str) -> Message:
    typed = _typed_struct(value)
    if typed is None:
        raise ConfigError(path, "cannot unpack the TypedStruct")
    inner = str(typed.type_url).rpartition("/")[2]
    descriptor = find_type(inner)
    if descriptor is None:
        raise ConfigError(f"{path}.type_url", f"not supported: unknown type {inner!r}")
    message: Message = message_factory.GetMessageClass(descriptor)()
    try:
        json_format.ParseDict(json_format.MessageToDict(typed.value), message)
    except json_format.ParseError as exc:
        raise ConfigError(f"{path}.value", f"not a valid {inner}: {exc}") from None
    return message


def unpack_any(value: any_pb2.Any, path: str) -> Message:
    """Resolve an `Any` to its concrete message, naming the path when the type is unknown.

    A `TypedStruct` (udpa.type.v1 or xds.type.v3) resolves to the message it describes, so
    compilers and the field walk see the extension's own config either way it was written."""
    type_name = value.type_url.rpartition("/")[2]
    if type_name in TYPED_STRUCTS:
        return _unpack_typed_struct(value, path)
    descriptor = find_type(type_name)
    if descriptor is None:
        raise ConfigError(path, f"not supported: unknown @type {type_name!r}")
    message: Message = message_factory.GetMessageClass(descriptor)()
    if not value.Unpack(message):
        raise ConfigError(path, f"cannot unpack @type {type_name!r}")
    return message


def check(message: Message, path: str) -> tuple[list[ConfigError], list[str]]:
    """Walk every set field; return (errors, warnings) for fields remora does not implement."""
    errors: list[ConfigError] = []
    warnings: list[str] = []
    _walk(message, path, errors, warnings)
    return errors, warnings


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _walk(message: Message, path: str, errors: list[ConfigError], warnings: list[str]) -> None:
    full_name = message.DESCRIPTOR.full_name
    if full_name in _LEAF_TYPES:
        return
    if full_name == "google.protobuf.Any":
        assert isinstance(message, any_pb2.Any)
        try:
            inner = unpack_any(message, path)
        except ConfigError as exc:
            errors.append(exc)
            return
        if inner.DESCRIPTOR.full_name not in _supported:
            errors.append(
                ConfigError(path, f"not supported: {path} (@type {inner.DESCRIPTOR.full_name})")
            )
            return
        _walk(inner, path, errors, warnings)
        return
    allowed = _supported.get(full_name)
    ignored = _ignored.get(full_name, {})
    for field, value in message.ListFields():
        field_path = _join(path, field.name)
        if field.name in ignored:
            warnings.append(f"ignored: {field_path} ({ignored[field.name]})")
            continue
        if allowed is None or field.name not in allowed:
            errors.append(ConfigError(field_path, f"not supported: {field_path}"))
            continue
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        entry_type = field.message_type
        assert entry_type is not None
        if entry_type.GetOptions().map_entry:
            value_field = entry_type.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    _walk(item, f"{field_path}[{key!r}]", errors, warnings)
        elif field.is_repeated:
            for index, item in enumerate(value):
                _walk(item, f"{field_path}[{index}]", errors, warnings)
        else:
            _walk(value, field_path, errors, warnings)
