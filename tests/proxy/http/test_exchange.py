"""Pure helpers of the exchange (its behaviour is covered end to end in tests/proxy)."""

from remora.proxy.http.config import ServerHeader
from remora.proxy.http.exchange import _apply_server_header, split_absolute_form


def test_split_absolute_form() -> None:
    assert split_absolute_form("http://h:80/p?q") == ("h:80", "/p?q")
    assert split_absolute_form("HTTPS://h") == ("h", "/")
    assert split_absolute_form("http://h?q=1") == ("h", "/?q=1")
    assert split_absolute_form("http://user@h/") is None
    assert split_absolute_form("mailto:x") is None


def test_server_header_modes() -> None:
    headers = [("a", "1"), ("server", "nginx"), ("b", "2"), ("server", "x")]
    _apply_server_header(headers, "remora", ServerHeader.OVERWRITE)
    assert headers == [("a", "1"), ("server", "remora"), ("b", "2")]
    kept = [("server", "nginx")]
    _apply_server_header(kept, "remora", ServerHeader.APPEND_IF_ABSENT)
    assert kept == [("server", "nginx")]
    added: list[tuple[str, str]] = []
    _apply_server_header(added, "remora", ServerHeader.APPEND_IF_ABSENT)
    assert added == [("server", "remora")]
    passed = [("server", "nginx")]
    _apply_server_header(passed, "remora", ServerHeader.PASS_THROUGH)
    assert passed == [("server", "nginx")]
