"""Pure helpers of the exchange (its behaviour is covered end to end in tests/proxy)."""

from remora.proxy.http.exchange import split_absolute_form


def test_split_absolute_form() -> None:
    assert split_absolute_form("http://h:80/p?q") == ("h:80", "/p?q")
    assert split_absolute_form("HTTPS://h") == ("h", "/")
    assert split_absolute_form("http://h?q=1") == ("h", "/?q=1")
    assert split_absolute_form("http://user@h/") is None
    assert split_absolute_form("mailto:x") is None
