"""Header mutations of routes, virtual hosts and route configurations.

One `HeaderMutation` is one level's `*_headers_to_add` + `*_headers_to_remove`, evaluated the way
Envoy's header parser does it: removals first; then every value is computed against the headers as
they were before this level added anything; then overwrites; then appends. A `MutationChain` is the
ordered levels that apply to one route (most specific first unless
`most_specific_header_mutations_wins`, in which case the route configuration goes first and the
most specific level, evaluated last, wins).

Header values may carry Envoy's `%COMMAND%` substitutions. Only commands whose value the caller can
supply cheaply per request are accepted (`HEADER_VALUE_COMMANDS`); their values come from the
optional `context` mapping. Any other command is a config error rather than a literal pass-through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

from remora.config.errors import ErrorCollector

# Commands a caller may supply in `context` (keys are the bare command names).
HEADER_VALUE_COMMANDS = frozenset(
    {
        "DOWNSTREAM_REMOTE_ADDRESS",
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
        "DOWNSTREAM_REMOTE_PORT",
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
        "DOWNSTREAM_LOCAL_ADDRESS",
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
        "DOWNSTREAM_LOCAL_PORT",
        "HOSTNAME",
        "PROTOCOL",
    }
)

APPEND_IF_EXISTS_OR_ADD = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
ADD_IF_ABSENT = base_pb2.HeaderValueOption.ADD_IF_ABSENT
OVERWRITE_IF_EXISTS_OR_ADD = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
OVERWRITE_IF_EXISTS = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS

_HEADER_NAME = re.compile(r"^[0-9a-z!#$%&'*+\-.^_`|~]+$")
_COMMAND = re.compile(r"%([A-Z0-9_]+)(\([^)]*\))?(:[0-9]+)?%")
_EMPTY: Mapping[str, str] = {}

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class HeaderAdd:
    name: str
    # A literal value, or a sequence of literals and command names (commands marked by
    # `is_command`) rendered per request.
    value: str
    parts: tuple[tuple[bool, str], ...] | None
    action: int
    keep_empty: bool

    def render(self, context: Mapping[str, str]) -> str:
        if self.parts is None:
            return self.value
        return "".join(
            context.get(text, "") if is_command else text for is_command, text in self.parts
        )


@dataclass(frozen=True, slots=True)
class HeaderMutation:
    remove: frozenset[str]
    add: tuple[HeaderAdd, ...]

    def apply(self, headers: Headers, context: Mapping[str, str]) -> None:
        """Mutate `headers` in place."""
        if self.remove:
            remove = self.remove
            headers[:] = [item for item in headers if item[0] not in remove]
        if not self.add:
            return
        present = {name for name, _ in headers}
        overwrite: list[tuple[str, str]] = []
        append: list[tuple[str, str]] = []
        for entry in self.add:
            value = entry.render(context)
            if not value and not entry.keep_empty:
                continue
            action = entry.action
            if action == APPEND_IF_EXISTS_OR_ADD:
                append.append((entry.name, value))
            elif action == ADD_IF_ABSENT:
                if entry.name not in present:
                    append.append((entry.name, value))
            elif action == OVERWRITE_IF_EXISTS_OR_ADD or entry.name in present:
                overwrite.append((entry.name, value))
        for name, value in overwrite:
            _set(headers, name, value)
        headers.extend(append)


def _set(headers: Headers, name: str, value: str) -> None:
    """Replace every `name` header with one, kept at the position of the first."""
    index = -1
    for i, (key, _) in enumerate(headers):
        if key == name:
            index = i
            break
    if index < 0:
        headers.append((name, value))
        return
    headers[index] = (name, value)
    headers[index + 1 :] = [item for item in headers[index + 1 :] if item[0] != name]


@dataclass(frozen=True, slots=True)
class MutationChain:
    """The levels applied to one route's request or response, in evaluation order."""

    levels: tuple[HeaderMutation, ...]

    def apply(
        self, headers: Sequence[tuple[str, str]], context: Mapping[str, str] | None
    ) -> Headers:
        if not self.levels:
            # Nothing to apply (most routes): no copy. Callers own the list they pass.
            return headers if isinstance(headers, list) else list(headers)
        out = list(headers)
        ctx = _EMPTY if context is None else context
        for level in self.levels:
            level.apply(out, ctx)
        return out


EMPTY_CHAIN = MutationChain(())


def chain(levels: Sequence[HeaderMutation | None], most_specific_wins: bool) -> MutationChain:
    """Build a chain from levels given most specific first."""
    present = [level for level in levels if level is not None]
    if most_specific_wins:
        present.reverse()
    return MutationChain(tuple(present)) if present else EMPTY_CHAIN


class _BadValue(ValueError):
    pass


def _parse_value(value: str, path: str) -> tuple[tuple[bool, str], ...] | None:
    """Split a header value into literal text and commands; None for a plain literal."""
    if "%" not in value:
        return None
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c != "%":
            literal.append(c)
            i += 1
            continue
        if value.startswith("%%", i):
            literal.append("%")
            i += 2
            continue
        match = _COMMAND.match(value, i)
        if match is None:
            raise _BadValue(
                f"invalid header value {value!r}: no command at offset {i} (write %% for %)"
            )
        command = match.group(0).strip("%")
        if command not in HEADER_VALUE_COMMANDS:
            raise _BadValue(f"not supported: header value command %{command}% in {path}")
        if literal:
            parts.append((False, "".join(literal)))
            literal = []
        parts.append((True, command))
        i = match.end()
    if literal:
        parts.append((False, "".join(literal)))
    return tuple(parts)


def _compile_add(
    option: base_pb2.HeaderValueOption, path: str, errors: ErrorCollector
) -> HeaderAdd | None:
    header = option.header
    name = header.key.lower()
    if name.startswith(":") or name == "host":
        errors.add(f"{path}.header.key", ":-prefixed or host headers may not be modified")
        return None
    if not _HEADER_NAME.match(name):
        errors.add(f"{path}.header.key", f"invalid header name {header.key!r}")
        return None
    if header.value and header.raw_value:
        errors.add(f"{path}.header", "only one of value and raw_value may be set")
        return None
    if option.HasField("append"):
        if option.append_action != APPEND_IF_EXISTS_OR_ADD:
            errors.add(f"{path}.append", "append and append_action may not both be set")
            return None
        action = APPEND_IF_EXISTS_OR_ADD if option.append.value else OVERWRITE_IF_EXISTS_OR_ADD
    else:
        action = option.append_action
    if header.raw_value:
        value = header.raw_value.decode("latin-1")
        value_path = f"{path}.header.raw_value"
    else:
        value = header.value
        value_path = f"{path}.header.value"
    if any(ch in value for ch in "\r\n\0"):
        errors.add(value_path, "a header value may not contain CR, LF or NUL")
        return None
    try:
        parts = _parse_value(value, value_path)
    except _BadValue as exc:
        errors.add(value_path, str(exc))
        return None
    if parts is not None and not any(is_command for is_command, _ in parts):
        # Only %% escapes: the value is a literal after all.
        value, parts = "".join(text for _, text in parts), None
    literal = value if parts is None else ""
    return HeaderAdd(name, literal, parts, action, option.keep_empty_value)


def compile_mutation(
    to_add: Sequence[base_pb2.HeaderValueOption],
    to_remove: Sequence[str],
    path: str,
    add_field: str,
    remove_field: str,
    errors: ErrorCollector,
) -> HeaderMutation | None:
    """Compile one level; None when the level has nothing to do."""
    adds: list[HeaderAdd] = []
    for i, option in enumerate(to_add):
        entry = _compile_add(option, f"{path}.{add_field}[{i}]", errors)
        if entry is not None:
            adds.append(entry)
    removes: set[str] = set()
    for i, name in enumerate(to_remove):
        lowered = name.lower()
        if not lowered or not _HEADER_NAME.match(lowered) or lowered == "host":
            errors.add(
                f"{path}.{remove_field}[{i}]",
                f"header {name!r} may not be removed (:-prefixed, host or invalid name)",
            )
            continue
        removes.add(lowered)
    if not adds and not removes:
        return None
    return HeaderMutation(frozenset(removes), tuple(adds))
