"""Every parse error in a config at once, each named by its field path.

`json_format.ParseDict` stops at the first problem and words it for protobuf's developers (a
camelCase list of valid fields, `invalid literal for int()`). When a strict parse fails, this walk
goes over the whole document against the message descriptors instead: it records each unknown
field, each value of the wrong type and each unknown `@type` with its path, drops just those
values, and hands back what is left, so the compilers can still report their own errors about
the rest. A config that parses strictly never comes here, so the walk costs nothing on the common
path.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from remora.config.errors import ConfigError
from remora.config.typeregistry import find_type

# What `json_format.ParseDict` raises for a bad value: ParseError mostly, but a well-known type
# without its `value` is a KeyError, an `@type` that is no string an AttributeError, and an
# infinite number an OverflowError.
PARSE_FAILURES = (
    json_format.ParseError,
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    OverflowError,
)

_DROP = object()  # the walk's "this value was wrong and is left out"

_INTEGER_RANGES = {
    FieldDescriptor.TYPE_UINT32: "0-4294967295",
    FieldDescriptor.TYPE_FIXED32: "0-4294967295",
    FieldDescriptor.TYPE_INT32: "-2147483648-2147483647",
    FieldDescriptor.TYPE_SINT32: "-2147483648-2147483647",
    FieldDescriptor.TYPE_SFIXED32: "-2147483648-2147483647",
    FieldDescriptor.TYPE_UINT64: "0-18446744073709551615",
    FieldDescriptor.TYPE_FIXED64: "0-18446744073709551615",
    FieldDescriptor.TYPE_INT64: "a 64-bit range",
    FieldDescriptor.TYPE_SINT64: "a 64-bit range",
    FieldDescriptor.TYPE_SFIXED64: "a 64-bit range",
}

# Well-known types with a JSON form of their own; each is parsed whole.
_WELL_KNOWN = {
    "google.protobuf.Duration": "a duration in seconds with an s suffix, e.g. 1s or 0.25s",
    "google.protobuf.Timestamp": "an RFC 3339 timestamp",
    "google.protobuf.UInt32Value": "an integer 0-4294967295",
    "google.protobuf.UInt64Value": "an integer 0-18446744073709551615",
    "google.protobuf.Int32Value": "an integer",
    "google.protobuf.Int64Value": "an integer",
    "google.protobuf.BoolValue": "true or false",
    "google.protobuf.StringValue": "a string",
    "google.protobuf.BytesValue": "base64 bytes",
    "google.protobuf.DoubleValue": "a number",
    "google.protobuf.FloatValue": "a number",
    "google.protobuf.Struct": "a mapping",
    "google.protobuf.Value": "any JSON value",
    "google.protobuf.ListValue": "a list",
    "google.protobuf.Empty": "an empty mapping",
    "google.protobuf.FieldMask": "a comma-separated list of field paths",
}


def find_errors(data: Any, descriptor: Descriptor, path: str = "") -> tuple[Any, list[ConfigError]]:
    """(`data` less its wrong values, one error per wrong value) for a `descriptor` message."""
    errors: list[ConfigError] = []
    cleaned = _message(data, descriptor, path, errors)
    return ({} if cleaned is _DROP else cleaned), errors


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _parses(data: Any, descriptor: Descriptor) -> bool:
    try:
        json_format.ParseDict(data, message_factory.GetMessageClass(descriptor)())
    except PARSE_FAILURES:
        return False
    return True


def _message(data: Any, descriptor: Descriptor, path: str, errors: list[ConfigError]) -> Any:
    name = descriptor.full_name
    if name in _WELL_KNOWN:
        if _parses(data, descriptor):
            return data
        errors.append(ConfigError(path, f"invalid value {data!r}: expected {_WELL_KNOWN[name]}"))
        return _DROP
    if not isinstance(data, dict):
        errors.append(ConfigError(path, f"expected a mapping ({name}), got {data!r}"))
        return _DROP
    if name == "google.protobuf.Any":
        return _any(data, path, errors)
    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        if field is None:
            errors.append(ConfigError(_join(path, str(key)), f"unknown field {key!r} in {name}"))
            continue
        result = _field(key, value, field, descriptor, _join(path, field.name), errors)
        if result is not _DROP:
            cleaned[key] = result
    return cleaned


def _any(data: dict[str, Any], path: str, errors: list[ConfigError]) -> Any:
    type_url = data.get("@type")
    if not isinstance(type_url, str) or not type_url:
        errors.append(ConfigError(_join(path, "@type"), "a typed config needs an '@type'"))
        return _DROP
    type_name = type_url.rpartition("/")[2]
    inner = find_type(type_name)
    if inner is None:
        errors.append(ConfigError(path, f"not supported: unknown @type {type_name!r}"))
        return _DROP
    body = {k: v for k, v in data.items() if k != "@type"}
    if inner.full_name in _WELL_KNOWN:  # an Any of a well-known type holds it under "value"
        cleaned = _message(body.get("value"), inner, _join(path, "value"), errors)
        return _DROP if cleaned is _DROP else {"@type": type_url, "value": cleaned}
    cleaned = _message(body, inner, path, errors)
    return _DROP if cleaned is _DROP else {"@type": type_url, **cleaned}


def _field(
    key: str,
    value: Any,
    field: FieldDescriptor,
    parent: Descriptor,
    path: str,
    errors: list[ConfigError],
) -> Any:
    if value is None:
        return value
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        if not isinstance(value, dict):
            errors.append(ConfigError(path, f"expected a mapping, got {value!r}"))
            return _DROP
        value_field = entry.fields_by_name["value"]
        mapped: dict[str, Any] = {}
        for map_key, item in value.items():
            item_path = f"{path}[{map_key!r}]"
            if value_field.message_type is not None:
                result = _message(item, value_field.message_type, item_path, errors)
            else:
                result = _scalar(key, {map_key: item}, field, parent, item_path, errors)
                result = result if result is _DROP else item
            if result is not _DROP:
                mapped[map_key] = result
        return mapped
    if field.is_repeated:
        if not isinstance(value, list):
            errors.append(ConfigError(path, f"expected a list, got {value!r}"))
            return _DROP
        items = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if entry is not None:
                result = _message(item, entry, item_path, errors)
            else:
                result = _scalar(key, [item], field, parent, item_path, errors)
                result = result if result is _DROP else item
            if result is not _DROP:
                items.append(result)
        return items
    if entry is not None:
        return _message(value, entry, path, errors)
    return _scalar(key, value, field, parent, path, errors)


def _scalar(
    key: str,
    value: Any,
    field: FieldDescriptor,
    parent: Descriptor,
    path: str,
    errors: list[ConfigError],
) -> Any:
    """Checked by parsing it alone into its parent message: json_format's own rules, our words."""
    if _parses({key: value}, parent):
        return value
    shown = value
    while isinstance(shown, list | dict) and len(shown) == 1:  # the item, not our wrapping
        shown = next(iter(shown.values())) if isinstance(shown, dict) else shown[0]
    errors.append(ConfigError(path, f"invalid value {shown!r}: expected {_expected(field)}"))
    return _DROP


def _expected(field: FieldDescriptor) -> str:
    if field.enum_type is not None:
        names = [v.name for v in field.enum_type.values]
        listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return f"one of {listed}"
    if field.type in _INTEGER_RANGES:
        return f"an integer ({_INTEGER_RANGES[field.type]})"
    return {
        FieldDescriptor.TYPE_BOOL: "true or false",
        FieldDescriptor.TYPE_STRING: "a string",
        FieldDescriptor.TYPE_BYTES: "base64 bytes",
        FieldDescriptor.TYPE_DOUBLE: "a number",
        FieldDescriptor.TYPE_FLOAT: "a number",
    }.get(field.type, "a value of another type")
