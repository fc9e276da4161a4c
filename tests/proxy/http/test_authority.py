"""Host / absolute-form authority validation (RFC 9112 §3.2, RFC 3986 §3.2.2)."""

import pytest

from remora.proxy.http.authority import valid_authority


@pytest.mark.parametrize(
    "authority",
    [
        "a",
        "example.com",
        "example.com:8080",
        "example.com:",  # RFC 3986: port = *DIGIT
        "127.0.0.1:10000",
        "[::1]",
        "[::1]:443",
        "[fe80::1%25eth0]",
        "xn--bcher-kva.example",
        "a%41b",
        "under_score.example",
        "sub-delims!$&'()*+;=",
    ],
)
def test_authorities_that_are_valid(authority: str) -> None:
    assert valid_authority(authority)
    assert valid_authority(authority)  # and again, from the cache of known ones


@pytest.mark.parametrize(
    "authority",
    [
        "a/evil?x",
        "a, b",
        "a,b",  # a list to some servers: refused, although RFC 3986 allows a comma
        "a\xe9",
        "a b",
        "user@host",
        ":80",
        "a:80x",
        "a:99999",
        "a:-1",
        "a:\uff18\uff10",  # fullwidth digits: isdigit() but not ASCII
        "[::1",
        "[]",
        "[::1]x",
        "[::1]:8o",
        "%",
        "a%4",
        "a%zz",
        "a\r\nx",
    ],
)
def test_authorities_that_are_refused(authority: str) -> None:
    assert not valid_authority(authority)
