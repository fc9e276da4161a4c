from hypothesis import given
from hypothesis import strategies as st

import remora.proxy.http.exchange as exchange_module
from remora.proxy.http.config import ServerHeader
from remora.proxy.http.h1_codec import (
    decode_headers,
    encode_chunk,
    encode_request_head,
    encode_response_head,
    forward_response_fields,
    response_has_body,
    status_line,
    strip_hop_by_hop,
)


def test_hop_by_hop_fields_and_connection_tokens_are_removed() -> None:
    headers = [
        ("connection", "close, X-Private"),
        ("x-private", "1"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "x"),
        ("x-kept", "yes"),
    ]
    kept, tokens = strip_hop_by_hop(headers)
    assert kept == [("x-kept", "yes")]
    assert tokens == {"close", "x-private"}


def test_plain_connection_values_take_the_fast_path() -> None:
    kept, tokens = strip_hop_by_hop([("connection", "keep-alive"), ("a", "b")])
    assert kept == [("a", "b")] and tokens == frozenset()


def test_encoding() -> None:
    head = encode_request_head("GET", "/x", [("host", "h")])
    assert head == b"GET /x HTTP/1.1\r\nhost: h\r\n\r\n"
    assert encode_response_head(404, []) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert encode_chunk(b"abc") == b"3\r\nabc\r\n"
    assert not response_has_body("HEAD", 200) and not response_has_body("GET", 304)
    assert response_has_body("GET", 200)


# -- the bytes path for forwarded response heads must match the decoded path exactly ----------

_NAMES = st.sampled_from(
    [
        b"Content-Type",
        b"content-length",
        b"Content-Length",
        b"Server",
        b"server",
        b"Date",
        b"Connection",
        b"Keep-Alive",
        b"Transfer-Encoding",
        b"TE",
        b"Upgrade",
        b"Trailer",
        b"Proxy-Authenticate",
        b"X-Custom",
        b"x-foo",
        b"ETag",
        b"Set-Cookie",
    ]
)
_VALUES = st.sampled_from(
    [b"keep-alive", b"close", b"Keep-Alive", b"x-foo", b"close, x-foo", b"nginx", b"1024", b"v"]
)


def _decoded_path(raw: list[tuple[bytes, bytes]], server: str, mode: ServerHeader) -> bytes:
    out, _ = strip_hop_by_hop(decode_headers(raw))
    apply_server = exchange_module._apply_server_header
    apply_server(out, server, mode)
    return encode_response_head(200, out)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12), st.sampled_from(list(ServerHeader)))
def test_forwarded_fields_match_the_decoded_path(
    raw: list[tuple[bytes, bytes]], mode: ServerHeader
) -> None:
    forwarded = forward_response_fields(raw, b"remora", mode.value)
    decoded = decode_headers(raw)
    named = any(
        n == "connection" and v not in ("keep-alive", "Keep-Alive", "close") for n, v in decoded
    )
    if forwarded is None:
        assert named  # only Connection naming other fields leaves the bytes path
        return
    parts, has_length = forwarded
    got = b"".join([status_line(200), *parts, b"\r\n\r\n"])
    want = _decoded_path(raw, "remora", mode)
    # The decoded path lowercases names; the bytes path keeps the sender's spelling.
    assert got.lower() == want.lower()
    assert has_length == any(n == "content-length" for n, _ in decoded)


def test_status_lines_are_cached_and_exact() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK"
    assert status_line(200) is status_line(200)
    assert status_line(599) == b"HTTP/1.1 599 Unknown"
