"""`safe_regex` on RE2 itself: Envoy's syntax, Envoy's refusals, linear time."""

from __future__ import annotations

import re
import time

import pytest

from remora.config.errors import ErrorCollector
from remora.proxy.http.route.re2 import (
    MAX_PROGRAM_SIZE,
    Re2SyntaxError,
    Regex,
    compile_pattern,
    translate_rewrite,
)


def _compile(pattern: str, limit: int = MAX_PROGRAM_SIZE) -> Regex:
    errors = ErrorCollector()
    regex = compile_pattern(pattern, "r", errors, limit)
    assert regex is not None, errors.errors
    return regex


def full(pattern: str, text: str) -> bool:
    return _compile(pattern).fullmatch(text)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"(?P<x>a)(?P=x)", "invalid perl operator: (?P"),
        (r"a(?=b)", "invalid perl operator: (?="),
        (r"(?<!a)b", "invalid perl operator: (?<!"),
        (r"(?>a+)b", "invalid perl operator"),
        (r"a++", "bad repetition operator: ++"),
        (r"a{1001}", "invalid repetition size: {1001}"),
        (r"a{2,1}", "invalid repetition size: {2,1}"),
        (r"[[:nope:]]", "invalid character class range"),
        ("abc\\", "trailing \\"),
        (r"[abc", "missing ]"),
        (r"(a", "missing )"),
        (r"\e", "invalid escape sequence"),
    ],
)
def test_refuses_what_re2_refuses_with_re2s_words(pattern: str, reason: str) -> None:
    errors = ErrorCollector()
    assert compile_pattern(pattern, "m.safe_regex.regex", errors) is None
    [error] = errors.errors
    assert error.path == "m.safe_regex.regex"
    assert error.message.startswith(f"invalid RE2 regex {pattern!r}: ")
    assert reason in error.message


def test_re2_syntax_means_what_it_means_in_envoy() -> None:
    assert full(r"(?P<name>a+)b", "aab")
    # Request text is latin-1 (a character per wire byte): RE2 sees the bytes, as in Envoy.
    assert full("/café", "/café".encode().decode("latin-1"))
    assert full("/caf.", "/café".encode().decode("latin-1"))  # . is one UTF-8 character
    assert full(r"a\z", "a")
    assert full(r"\Qa.b*\E+", "a.b***")  # the quantifier binds to the last literal
    assert not full(r"\Qa.b\E", "axb")
    assert full(r"[[:digit:]]+-[[:alpha:]_]+", "42-ab_c")
    assert full(r"\x{263a}", "\u263a")
    assert full(r"(?i)/xxx/", "/XxX/")
    assert full(r"a(?i)b", "aB")  # RE2 scopes a flag group to the rest of its group
    # Unicode classes exist in RE2 (and are big programs: Envoy's default limit refuses this one).
    assert _compile(r"\pL+", limit=2000).fullmatch("héllo".encode().decode("latin-1"))
    assert full(r"(?U)a+", "aaa")
    assert full(r"a{,3}", "a{,3}")  # in RE2 `{,3}` is literal text
    # RE2's \d, \w and \b are ASCII-only.
    assert not full(r"\d", "\u0663")
    assert not full(r"\w", "\u00e9")


def test_matching_takes_linear_time_where_backtracking_would_not_finish() -> None:
    regex = _compile(r"^(\w+\s?)*$")
    subject = "a" * 50_000 + "!"
    started = time.monotonic()
    assert not regex.fullmatch(subject)
    assert time.monotonic() - started < 0.5


def test_program_size_is_bounded_as_in_envoy() -> None:
    errors = ErrorCollector()
    big = "/static/[a-zA-Z0-9._-]{0,200}/"
    assert compile_pattern(big, "x.regex", errors) is None
    assert "RE2 program size of" in errors.errors[0].message
    assert "over the limit of 100" in errors.errors[0].message
    assert _compile(big, limit=10_000).fullmatch("/static/a.b/")


def test_rewrite_template() -> None:
    template = translate_rewrite(r"\2/instance/\1\\", 2)
    assert re.sub(r"^/service/([^/]+)(/.*)$", template, "/service/foo/v1/api") == (
        "/v1/api/instance/foo\\"
    )
    regex = _compile(r"^/service/([^/]+)(/.*)$")
    assert regex.sub(template, "/service/foo/v1/api") == "/v1/api/instance/foo\\"
    assert translate_rewrite(r"<\0>", 0) == r"<\g<0>>"
    with pytest.raises(Re2SyntaxError, match="has 1 group"):
        translate_rewrite(r"\2", 1)
    with pytest.raises(Re2SyntaxError, match="invalid escape"):
        translate_rewrite(r"\n", 1)
