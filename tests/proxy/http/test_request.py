"""Request framing as recorded from a parsed head (RFC 9112 §6)."""

from remora.proxy.http.request import Request


def _framing(*headers: tuple[str, str], upgrade: bool = False) -> tuple[int, bool, int | None]:
    request = Request(1024, lambda _block: None)
    request.headers = list(headers)
    request.upgrade = upgrade
    refusal = request.classify_body()
    return refusal[0] if refusal else 0, request.chunked, request.content_length


def test_lengths_and_chunked() -> None:
    assert _framing() == (0, False, None)
    assert _framing(("content-length", "5")) == (0, False, 5)
    assert _framing(("transfer-encoding", "chunked")) == (0, True, None)
    assert _framing(("transfer-encoding", "Chunked ")) == (0, True, None)


def test_final_coding_must_be_chunked() -> None:
    assert _framing(("transfer-encoding", "gzip"))[0] == 400
    assert _framing(("transfer-encoding", "chunked, gzip"))[0] == 400
    assert _framing(("transfer-encoding", "chunked"), ("transfer-encoding", "gzip"))[0] == 400


def test_codings_the_proxy_does_not_decode_are_not_implemented() -> None:
    # Forwarding "gzip, chunked" as plain chunked would silently drop the gzip coding.
    assert _framing(("transfer-encoding", "gzip, chunked"))[0] == 501
    assert _framing(("transfer-encoding", "gzip"), ("transfer-encoding", "chunked"))[0] == 501


def test_an_upgrade_request_with_a_body_is_refused() -> None:
    # llhttp ends an upgrade request at its head: its body would go upstream as tunnel bytes.
    assert _framing(("transfer-encoding", "chunked"), upgrade=True)[0] == 400
    assert _framing(("content-length", "3"), upgrade=True)[0] == 400
    assert _framing(("content-length", "0"), upgrade=True)[0] == 0
    assert _framing(upgrade=True)[0] == 0
