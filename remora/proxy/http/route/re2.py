"""RE2 patterns and rewrite strings, run on Python's `re`.

Envoy evaluates every `safe_regex` with RE2. Python's `re` accepts a superset of RE2's syntax
(backreferences, lookaround, possessive quantifiers...) and spells a few things differently
(`\\z`, `(?<name>...)`, `\\Q...\\E`, POSIX classes). A pattern that Envoy would reject must be
rejected here too, and one Envoy accepts must mean the same thing, so patterns go through a small
translator instead of straight into `re.compile`. Patterns are compiled with `re.ASCII` because
RE2's `\\d`, `\\w`, `\\s` and `\\b` are ASCII-only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envoy.type.matcher.v3 import regex_pb2

from remora.config.errors import ErrorCollector

# RE2 rejects counted repetitions above this bound.
_MAX_REPEAT = 1000

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}

# Escapes that mean the same in RE2 and Python's `re`.
_SHARED_ESCAPES = frozenset("AbBdDsSwWfnrtva")
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([a-zA-Z-]*)([:)])")


class Re2SyntaxError(ValueError):
    """The pattern is not valid RE2, or uses RE2 syntax Python cannot express."""


def translate(pattern: str) -> str:
    """Return a Python `re` pattern equivalent to the RE2 `pattern`, or raise Re2SyntaxError."""
    return _Translator(pattern).run()


def _escape_code(code: int) -> str:
    if code > 0x10FFFF:
        raise Re2SyntaxError(f"character code {code:#x} is out of range")
    return f"\\U{code:08x}" if code > 0xFF else f"\\x{code:02x}"


class _Translator:
    __slots__ = ("i", "in_class", "out", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.i = 0
        self.in_class = False
        self.out: list[str] = []

    def run(self) -> str:
        p = self.pattern
        while self.i < len(p):
            c = p[self.i]
            if c == "\\":
                self._escape()
            elif self.in_class:
                self._class_char(c)
            elif c == "[":
                self._open_class()
            elif c == "(":
                self._group()
            elif c in "*+?":
                self.out.append(c)
                self.i += 1
                self._after_quantifier()
            elif c == "{":
                self._brace()
            else:
                self.out.append(c)
                self.i += 1
        if self.in_class:
            raise Re2SyntaxError("missing closing ]")
        return "".join(self.out)

    def _after_quantifier(self) -> None:
        p = self.pattern
        if self.i < len(p) and p[self.i] == "?":
            self.out.append("?")
            self.i += 1
        elif self.i < len(p) and p[self.i] == "+":
            raise Re2SyntaxError("possessive quantifiers are not supported by RE2")

    def _brace(self) -> None:
        match = _REPEAT.match(self.pattern, self.i)
        if match is None:
            # RE2, like Python, takes a brace that is not a repetition literally.
            self.out.append("\\{")
            self.i += 1
            return
        low = int(match.group(1))
        high = match.group(3)
        if low > _MAX_REPEAT or (high and int(high) > _MAX_REPEAT):
            raise Re2SyntaxError(
                f"bad repetition operator {match.group(0)} (RE2 allows at most 1000)"
            )
        if high and int(high) < low:
            raise Re2SyntaxError(f"bad repetition operator {match.group(0)}")
        self.out.append(match.group(0))
        self.i = match.end()
        self._after_quantifier()

    def _group(self) -> None:
        p = self.pattern
        rest = p[self.i :]
        if not rest.startswith("(?"):
            self.out.append("(")
            self.i += 1
            return
        if rest.startswith("(?:"):
            self.out.append("(?:")
            self.i += 3
            return
        if rest.startswith("(?P<"):
            self.out.append("(?P<")
            self.i += 4
            return
        if rest.startswith("(?P=") or rest.startswith("(?P>"):
            raise Re2SyntaxError("backreferences are not supported by RE2")
        if rest.startswith(("(?=", "(?!", "(?<=", "(?<!")):
            raise Re2SyntaxError("lookaround assertions are not supported by RE2")
        if rest.startswith("(?<"):
            self.out.append("(?P<")
            self.i += 3
            return
        if rest.startswith("(?>"):
            raise Re2SyntaxError("atomic groups are not supported by RE2")
        if rest.startswith("(?("):
            raise Re2SyntaxError("conditional groups are not supported by RE2")
        if rest.startswith("(?#"):
            raise Re2SyntaxError("comment groups are not supported by RE2")
        self._flags()

    def _flags(self) -> None:
        match = _FLAGS.match(self.pattern, self.i)
        if match is None:
            raise Re2SyntaxError(f"invalid group syntax at offset {self.i}")
        flags, end = match.groups()
        for flag in flags:
            if flag == "U":
                raise Re2SyntaxError("the ungreedy flag (?U) is not supported")
            if flag not in "ims-":
                raise Re2SyntaxError(f"invalid flag {flag!r} in {match.group(0)}")
        if not flags.replace("-", "") or flags.endswith("-") or flags.count("-") > 1:
            raise Re2SyntaxError(f"invalid flag group {match.group(0)}")
        if end == ")" and (self.i != 0 or "-" in flags):
            # Python only accepts global flags at the very start; RE2 scopes them to the
            # enclosing group, which Python can only say as (?flags:...).
            raise Re2SyntaxError(
                f"inline flags {match.group(0)} are only supported at the start of the "
                "pattern; use the scoped form (?flags:...)"
            )
        self.out.append(match.group(0))
        self.i = match.end()

    def _open_class(self) -> None:
        p = self.pattern
        self.out.append("[")
        self.i += 1
        self.in_class = True
        if self.i < len(p) and p[self.i] == "^":
            self.out.append("^")
            self.i += 1
        if self.i < len(p) and p[self.i] == "]":
            self.out.append("\\]")
            self.i += 1

    def _class_char(self, c: str) -> None:
        p = self.pattern
        if c == "]":
            self.in_class = False
            self.out.append("]")
            self.i += 1
            return
        if c == "[" and p.startswith("[:", self.i):
            end = p.find(":]", self.i + 2)
            if end < 0:
                raise Re2SyntaxError("unterminated POSIX class")
            name = p[self.i + 2 : end]
            if name not in _POSIX_CLASSES:
                raise Re2SyntaxError(f"unsupported POSIX class [:{name}:]")
            self.out.append(_POSIX_CLASSES[name])
            self.i = end + 2
            return
        if c == "[":
            # Python warns about (and may one day give meaning to) nested sets; in RE2 a `[`
            # inside a class is a plain character.
            self.out.append("\\[")
            self.i += 1
            return
        if c in "&~|-" and p[self.i + 1 : self.i + 2] == c:
            # Same for doubled set operators.
            self.out.append(c + "\\" + c)
            self.i += 2
            return
        self.out.append(c)
        self.i += 1

    def _escape(self) -> None:
        p = self.pattern
        if self.i + 1 >= len(p):
            raise Re2SyntaxError("trailing backslash at end of pattern")
        d = p[self.i + 1]
        if d == "Q":
            end = p.find("\\E", self.i + 2)
            literal = p[self.i + 2 :] if end < 0 else p[self.i + 2 : end]
            self.out.append("".join(_escape_code(ord(ch)) for ch in literal))
            self.i = len(p) if end < 0 else end + 2
            return
        if d.isdigit():
            self._octal_or_backref(d)
            return
        if d == "z":
            if self.in_class:
                raise Re2SyntaxError("\\z is not allowed in a character class")
            self.out.append("\\Z")
        elif d == "x":
            self._hex()
            return
        elif d in "pP":
            raise Re2SyntaxError("Unicode classes (\\p, \\P) are not supported")
        elif d in _SHARED_ESCAPES:
            if d in "AbBz" and self.in_class:
                raise Re2SyntaxError(f"\\{d} is not allowed in a character class")
            self.out.append("\\" + d)
        elif d.isascii() and not d.isalnum():
            self.out.append("\\" + d)
        else:
            raise Re2SyntaxError(f"invalid escape sequence \\{d}")
        self.i += 2

    def _octal_or_backref(self, d: str) -> None:
        p = self.pattern
        j = self.i + 1
        digits = ""
        while j < len(p) and len(digits) < 3 and p[j] in "01234567":
            digits += p[j]
            j += 1
        # RE2: a lone \1-\9 is a backreference (rejected); \0 or two or more octal digits is octal.
        if d in "89" or (d != "0" and len(digits) < 2):
            raise Re2SyntaxError(f"backreferences are not supported by RE2 (\\{d})")
        self.out.append(_escape_code(int(digits, 8)))
        self.i = j

    def _hex(self) -> None:
        p = self.pattern
        start = self.i + 2
        if start < len(p) and p[start] == "{":
            end = p.find("}", start)
            digits = p[start + 1 : end] if end > 0 else ""
            if not digits or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
                raise Re2SyntaxError("invalid \\x{...} escape")
            self.out.append(_escape_code(int(digits, 16)))
            self.i = end + 1
            return
        digits = p[start : start + 2]
        if len(digits) != 2 or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
            raise Re2SyntaxError("invalid \\x escape")
        self.out.append("\\x" + digits)
        self.i = start + 2


def compile_pattern(pattern: str, path: str, errors: ErrorCollector) -> re.Pattern[str] | None:
    """Translate and compile an RE2 pattern; report a problem at `path` and return None."""
    try:
        return re.compile(translate(pattern), re.ASCII)
    except Re2SyntaxError as exc:
        errors.add(path, f"invalid RE2 regex {pattern!r}: {exc}")
    except re.error as exc:
        errors.add(path, f"invalid regex {pattern!r}: {exc}")
    except (OverflowError, RecursionError) as exc:
        errors.add(path, f"regex {pattern!r} is too complex: {exc}")
    return None


def compile_regex_matcher(
    matcher: regex_pb2.RegexMatcher, path: str, errors: ErrorCollector
) -> re.Pattern[str] | None:
    """Compile an `envoy.type.matcher.v3.RegexMatcher` (the engine is always RE2 semantics)."""
    return compile_pattern(matcher.regex, f"{path}.regex", errors)


@dataclass(frozen=True, slots=True)
class Substitution:
    """A compiled `RegexMatchAndSubstitute`: every match is replaced, as RE2::GlobalReplace does."""

    pattern: re.Pattern[str]
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
