from __future__ import annotations

import re
import warnings

import pytest

from remora.config.errors import ErrorCollector
from remora.proxy.http.route.re2 import (
    Re2SyntaxError,
    compile_pattern,
    translate,
    translate_rewrite,
)


def full(pattern: str, text: str) -> bool:
    return re.fullmatch(translate(pattern), text, re.ASCII) is not None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreference"),
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"\8", "backreference"),
        (r"a(?=b)", "lookaround"),
        (r"a(?!b)", "lookaround"),
        (r"(?<=a)b", "lookaround"),
        (r"(?<!a)b", "lookaround"),
        (r"(?>a+)b", "atomic"),
        (r"a++", "possessive"),
        (r"a{2}+", "possessive"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"(?#note)a", "comment"),
        (r"(?U)a+", "ungreedy"),
        (r"(?x)a b", "invalid flag"),
        (r"a(?i)b", "start of the pattern"),
        (r"\pL", "Unicode classes"),
        (r"a\Z", "not RE2|invalid escape"),
        (r"\e", "invalid escape"),
        (r"a{1001}", "at most 1000"),
        (r"[[:nope:]]", "POSIX class"),
        ("abc\\", "trailing backslash"),
        (r"[abc", "missing closing"),
    ],
)
def test_rejects_what_re2_does_not_have(pattern: str, reason: str) -> None:
    with pytest.raises(Re2SyntaxError, match=reason):
        translate(pattern)


def test_re2_spellings_are_translated() -> None:
    assert full(r"(?<name>a+)b", "aab")
    assert full(r"a\z", "a")
    assert full(r"\Qa.b*\E+", "a.b***")  # the quantifier binds to the last literal
    assert not full(r"\Qa.b\E", "axb")
    assert full(r"[[:digit:]]+-[[:alpha:]_]+", "42-ab_c")
    assert not full(r"[[:digit:]]+", "4a")
    assert full(r"\x{263a}", "\u263a")
    assert full(r"\101\0", "A\0")
    assert full(r"(?i)/xxx/", "/XxX/")
    assert full(r"(?i:ab)c", "ABc")
    assert not full(r"(?i:ab)c", "ABC")


def test_ascii_semantics_like_re2() -> None:
    # RE2's \d and \w are ASCII-only; Python's str patterns would be Unicode without re.ASCII.
    assert not full(r"\d", "\u0663")
    assert not full(r"\w", "\u00e9")
    assert full(r"\d\w", "7x")


def test_literal_brace_that_is_not_a_repetition() -> None:
    # In RE2 `{,3}` is literal text; Python would read it as a 0..3 repetition.
    assert full(r"a{,3}", "a{,3}")
    assert not full(r"a{,3}", "aa")
    assert full(r"a{2,3}", "aaa")


def test_nested_bracket_inside_class_is_literal_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert full(r"[[a]+", "[a[")
        assert full(r"[a&&b]+", "a&&b")


def test_compile_pattern_reports_path() -> None:
    errors = ErrorCollector()
    assert compile_pattern(r"(a", "x.regex", errors) is None
    assert compile_pattern(r"(a)\1", "y.regex", errors) is None
    assert [e.path for e in errors.errors] == ["x.regex", "y.regex"]
    assert "invalid" in errors.errors[0].message
    assert "backreferences" in errors.errors[1].message


def test_rewrite_template() -> None:
    template = translate_rewrite(r"\2/instance/\1\\", 2)
    assert re.sub(r"^/service/([^/]+)(/.*)$", template, "/service/foo/v1/api") == (
        "/v1/api/instance/foo\\"
    )
    assert translate_rewrite(r"<\0>", 0) == r"<\g<0>>"
    with pytest.raises(Re2SyntaxError, match="has 1 group"):
        translate_rewrite(r"\2", 1)
    with pytest.raises(Re2SyntaxError, match="invalid escape"):
        translate_rewrite(r"\n", 1)
