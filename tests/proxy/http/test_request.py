"""Request framing as recorded from a parsed head (RFC 9112 §6)."""

from remora.proxy.http.request import Request


def _framing(*headers: tuple[str, str]) -> tuple[int, bool, int | None]:
    request = Request(1024, lambda _block: None)
    request.headers = list(headers)
    status = request.classify_body()
    return status, request.chunked, request.content_length


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
