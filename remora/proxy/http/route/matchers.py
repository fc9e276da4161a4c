"""Header, query-parameter and string matchers of a route, compiled for the request path.

Semantics follow Envoy's HeaderMatcher: several values of one header are joined with "," before
matching; a missing header fails every matcher except `present_match: false` (and, inverted,
`present_match: true`) unless `treat_missing_header_as_empty` is set; `invert_match` flips the
result of a header that is present. Pseudo-headers read the request's attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.type.matcher.v3 import string_pb2

from remora.config.errors import ErrorCollector
from remora.proxy.http.route.re2 import Regex, compile_regex_matcher

if TYPE_CHECKING:
    from remora.proxy.http.route.table import RouteRequest

# StringMatch kinds.
EXACT, PREFIX, SUFFIX, CONTAINS, REGEX, ANY = range(6)

_HEADER_NAME = re.compile(r"^:?[0-9a-z!#$%&'*+\-.^_`|~]+$")
_INT64 = re.compile(r"[+-]?[0-9]+", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: int
    value: str  # lowercased when ignore_case
    ignore_case: bool
    regex: Regex | None

    def matches(self, text: str) -> bool:
        kind = self.kind
        if kind == REGEX:
            assert self.regex is not None
            return self.regex.fullmatch(text)
        if kind == ANY:
            return True
        if self.ignore_case:
            text = text.lower()
        if kind == EXACT:
            return text == self.value
        if kind == PREFIX:
            return text.startswith(self.value)
        if kind == SUFFIX:
            return text.endswith(self.value)
        return self.value in text


def compile_string_matcher(
    message: string_pb2.StringMatcher, path: str, errors: ErrorCollector
) -> StringMatch | None:
    which = message.WhichOneof("match_pattern")
    ignore_case = message.ignore_case
    if which == "safe_regex":
        regex = compile_regex_matcher(message.safe_regex, f"{path}.safe_regex", errors)
        return None if regex is None else StringMatch(REGEX, "", False, regex)
    kinds = {"exact": EXACT, "prefix": PREFIX, "suffix": SUFFIX, "contains": CONTAINS}
    if which not in kinds:
        if which is None:
            errors.add(
                path, "a StringMatcher needs one of exact, prefix, suffix, contains, safe_regex"
            )
        else:
            errors.add(f"{path}.{which}", f"not supported: {path}.{which}")
        return None
    value: str = getattr(message, which)
    if not value and which != "exact":
        errors.add(f"{path}.{which}", f"{which} must not be empty")
        return None
    return StringMatch(kinds[which], value.lower() if ignore_case else value, ignore_case, None)


# Where a header matcher reads its value from.
_SOURCE_HEADER, _SOURCE_METHOD, _SOURCE_PATH, _SOURCE_AUTHORITY, _SOURCE_SCHEME, _SOURCE_NONE = (
    range(6)
)
_PSEUDO_SOURCES = {
    ":method": _SOURCE_METHOD,
    ":path": _SOURCE_PATH,
    ":authority": _SOURCE_AUTHORITY,
    "host": _SOURCE_AUTHORITY,
    ":scheme": _SOURCE_SCHEME,
}

# HeaderMatch kinds.
_PRESENT, _STRING, _RANGE = range(3)


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    source: int
    kind: int
    present: bool
    string: StringMatch | None
    range_start: int
    range_end: int
    invert: bool
    missing_as_empty: bool

    def value(self, request: RouteRequest) -> str | None:
        source = self.source
        if source == _SOURCE_HEADER:
            name = self.name
            found: str | None = None
            for key, item in request.headers:
                if key == name:
                    found = item if found is None else f"{found},{item}"
            return found
        if source == _SOURCE_PATH:
            return request.path
        if source == _SOURCE_METHOD:
            return request.method
        if source == _SOURCE_AUTHORITY:
            return request.authority
        if source == _SOURCE_SCHEME:
            return request.scheme
        return None

    def matches(self, request: RouteRequest) -> bool:
        value = self.value(request)
        if value is None:
            if not self.missing_as_empty:
                return self.kind == _PRESENT and self.present == self.invert
            value = ""
        kind = self.kind
        if kind == _STRING:
            assert self.string is not None
            matched = self.string.matches(value)
        elif kind == _PRESENT:
            matched = self.present
        else:
            matched = (
                _INT64.fullmatch(value) is not None
                and self.range_start <= int(value) < self.range_end
            )
        return matched != self.invert


def compile_header_matcher(
    message: rc_pb2.HeaderMatcher, path: str, errors: ErrorCollector
) -> HeaderMatch | None:
    name = message.name.lower()
    if not name or not _HEADER_NAME.match(name):
        errors.add(f"{path}.name", f"invalid header name {message.name!r}")
        return None
    source = _PSEUDO_SOURCES.get(name, _SOURCE_NONE if name.startswith(":") else _SOURCE_HEADER)
    which = message.WhichOneof("header_match_specifier")
    kind, present, string, start, end = _STRING, True, None, 0, 0
    if which is None:
        # Envoy: with no specifier the matcher is a presence check.
        kind = _PRESENT
    elif which == "present_match":
        kind, present = _PRESENT, message.present_match
    elif which == "range_match":
        kind, start, end = _RANGE, message.range_match.start, message.range_match.end
        if start >= end:
            errors.add(f"{path}.range_match", "range start must be lower than end")
            return None
    elif which == "string_match":
        string = compile_string_matcher(message.string_match, f"{path}.string_match", errors)
        if string is None:
            return None
    elif which == "safe_regex_match":
        regex = compile_regex_matcher(message.safe_regex_match, f"{path}.safe_regex_match", errors)
        if regex is None:
            return None
        string = StringMatch(REGEX, "", False, regex)
    elif which == "exact_match":
        # The deprecated exact_match treats an empty value as "any value".
        value = message.exact_match
        string = StringMatch(EXACT if value else ANY, value, False, None)
    elif which in ("prefix_match", "suffix_match", "contains_match"):
        value = getattr(message, which)
        if not value:
            errors.add(f"{path}.{which}", f"{which} must not be empty; use present_match")
            return None
        kinds = {"prefix_match": PREFIX, "suffix_match": SUFFIX, "contains_match": CONTAINS}
        string = StringMatch(kinds[which], value, False, None)
    else:
        errors.add(f"{path}.{which}", f"not supported: {path}.{which}")
        return None
    return HeaderMatch(
        name=name,
        source=source,
        kind=kind,
        present=present,
        string=string,
        range_start=max(start, _INT64_MIN),
        range_end=min(end, _INT64_MAX + 1),
        invert=message.invert_match,
        missing_as_empty=message.treat_missing_header_as_empty,
    )


@dataclass(frozen=True, slots=True)
class QueryMatch:
    """Envoy only looks at the first value of a repeated query parameter; values are not decoded."""

    name: str
    present: bool | None  # set for present_match
    string: StringMatch | None

    def matches(self, params: dict[str, str]) -> bool:
        value = params.get(self.name)
        if value is None:
            return self.present is False
        if self.present is not None:
            return self.present
        return self.string is None or self.string.matches(value)


def compile_query_matcher(
    message: rc_pb2.QueryParameterMatcher, path: str, errors: ErrorCollector
) -> QueryMatch | None:
    if not message.name:
        errors.add(f"{path}.name", "a query parameter name is required")
        return None
    which = message.WhichOneof("query_parameter_match_specifier")
    if which == "present_match":
        return QueryMatch(message.name, message.present_match, None)
    if which == "string_match":
        string = compile_string_matcher(message.string_match, f"{path}.string_match", errors)
        return None if string is None else QueryMatch(message.name, None, string)
    if which is None:
        return QueryMatch(message.name, True, None)
    errors.add(f"{path}.{which}", f"not supported: {path}.{which}")
    return None


def parse_query(query: str) -> dict[str, str]:
    """Split `a=1&b&a=2` into {"a": "1", "b": ""}; the first value of a name wins."""
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.setdefault(name, value)
    return params


def is_grpc(request: RouteRequest) -> bool:
    """The content-type test Envoy's `grpc` route match option applies."""
    for key, value in request.headers:
        if key == "content-type":
            if not value.startswith("application/grpc"):
                return False
            return len(value) == 16 or value[16] in "+;"
    return False
