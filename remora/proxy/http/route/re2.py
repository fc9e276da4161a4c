"""`safe_regex` on RE2 itself, as in Envoy: linear-time matching, whatever the pattern or input.

Python's `re` backtracks, so a pattern such as `^(\\w+\\s?)*$` against a long path can hold the
event loop for minutes. google-re2 binds the same C++ engine Envoy links, so a pattern means the
same, is refused for the same reasons (with RE2's own messages), and matches in linear time.

Envoy also refuses a regex whose compiled program is larger than 100 instructions (the runtime key
`re2.max_program_size.error_level`) unless the deprecated `google_re2.max_program_size` raises the
bound; both are honoured here, so a config that loads in one loads in the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2 as google_re2
from envoy.type.matcher.v3 import regex_pb2

from remora.config.errors import ErrorCollector

# Envoy's default for `re2.max_program_size.error_level`.
MAX_PROGRAM_SIZE = 100


class Re2SyntaxError(ValueError):
    """A rewrite string RE2 would not accept."""


class Regex:
    """A compiled RE2 pattern: a boolean full match (the route table's question) and `sub`.

    The full match calls the engine's `Match` directly with the pattern anchored at both ends:
    the module's `fullmatch` builds a match object and maps byte offsets back to characters,
    five times the cost, for an answer the route table only needs as yes or no. Those internals
    are google-re2's, pinned in pyproject.toml and covered by tests/proxy/http/route/test_re2.py.
    """

    __slots__ = ("_compiled", "_match")

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._match = compiled._regexp.Match

    @property
    def pattern(self) -> str:
        return str(self._compiled.pattern)

    @property
    def groups(self) -> int:
        return int(self._compiled.groups)

    @property
    def program_size(self) -> int:
        return int(self._compiled.programsize)

    def fullmatch(self, text: str) -> bool:
        """Whether all of `text` matches. Request text is held as latin-1 (one character per
        byte off the wire), so its bytes are what RE2 sees, as in Envoy: a pattern `é` matches
        the UTF-8 bytes of `é` in a path."""
        try:
            encoded = text.encode("latin-1")
        except UnicodeEncodeError:  # not wire text (config or generated): its UTF-8 form
            encoded = text.encode("utf-8", "surrogatepass")
        return bool(self._match(_ANCHOR_BOTH, encoded, 0, len(encoded))[0] != _NO_MATCH)

    def sub(self, template: str, text: str) -> str:
        return str(self._compiled.sub(template, text))


_ANCHOR_BOTH = google_re2._Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)


def _options() -> google_re2.Options:
    options = google_re2.Options()
    options.log_errors = False  # the error goes to the operator with its field path instead
    return options


_OPTIONS = _options()


def compile_pattern(
    pattern: str, path: str, errors: ErrorCollector, max_program_size: int = MAX_PROGRAM_SIZE
) -> Regex | None:
    """Compile an RE2 pattern; report a problem at `path` and return None."""
    try:
        regex = Regex(google_re2.compile(pattern, _OPTIONS))
    except google_re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args else str(exc)
        errors.add(path, f"invalid RE2 regex {pattern!r}: {detail}")
        return None
    size = regex.program_size
    if size > max_program_size:
        errors.add(
            path,
            f"regex {pattern!r} has an RE2 program size of {size}, over the limit of "
            f"{max_program_size} (raise google_re2.max_program_size, or simplify the regex)",
        )
        return None
    return regex


def compile_regex_matcher(
    matcher: regex_pb2.RegexMatcher, path: str, errors: ErrorCollector
) -> Regex | None:
    """Compile an `envoy.type.matcher.v3.RegexMatcher` (the engine is always RE2)."""
    limit = MAX_PROGRAM_SIZE
    if matcher.HasField("google_re2") and matcher.google_re2.HasField("max_program_size"):
        limit = matcher.google_re2.max_program_size.value
    return compile_pattern(matcher.regex, f"{path}.regex", errors, limit)


@dataclass(frozen=True, slots=True)
class Substitution:
    """A compiled `RegexMatchAndSubstitute`: every match is replaced, as RE2::GlobalReplace does."""

    pattern: Regex
    template: str

    def apply(self, value: str) -> str:
        return self.pattern.sub(self.template, value)


def translate_rewrite(substitution: str, groups: int) -> str:
    """Turn an RE2 rewrite string (`\\1`, `\\0`, `\\\\`) into a Python `re.sub` template."""
    out: list[str] = []
    i = 0
    while i < len(substitution):
        c = substitution[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(substitution):
            raise Re2SyntaxError("trailing backslash in substitution")
        d = substitution[i + 1]
        if d == "\\":
            out.append("\\\\")
        elif d.isdigit():
            if int(d) > groups:
                raise Re2SyntaxError(
                    f"substitution refers to group \\{d} but the pattern has {groups} group(s)"
                )
            out.append(f"\\g<{d}>")
        else:
            raise Re2SyntaxError(f"invalid escape \\{d} in substitution (use \\0-\\9 or \\\\)")
        i += 2
    return "".join(out)


def compile_substitution(
    message: regex_pb2.RegexMatchAndSubstitute, path: str, errors: ErrorCollector
) -> Substitution | None:
    if not message.HasField("pattern"):
        errors.add(f"{path}.pattern", "a pattern is required")
        return None
    pattern = compile_regex_matcher(message.pattern, f"{path}.pattern", errors)
    if pattern is None:
        return None
    try:
        template = translate_rewrite(message.substitution, pattern.groups)
    except Re2SyntaxError as exc:
        errors.add(f"{path}.substitution", str(exc))
        return None
    return Substitution(pattern, template)
