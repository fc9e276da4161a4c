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
    [
        b"keep-alive",
        b"close",
        b"Keep-Alive",
        b"x-foo",
        b"close, x-foo",
        b"nginx",
        b"1024",
        b"v",
        b"chunked",
        b"gzip, chunked",
    ]
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
    codings = [v.lower() for n, v in decoded if n == "transfer-encoding"]
    coded = codings not in ([], ["chunked"])
    if forwarded is None:
        # Only Connection naming other fields, or codings beyond one plain chunked (which
        # must be forwarded as they came), leave the bytes path.
        assert named or coded
        return
    assert not coded
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


def test_a_204_loses_its_content_length_on_the_bytes_path() -> None:
    forwarded = forward_response_fields(
        [(b"Content-Length", b"5"), (b"ETag", b"x")], b"remora", 0, True
    )
    assert forwarded is not None
    parts, has_length = forwarded
    assert b"Content-Length" not in parts and not has_length


def test_unterminated_line_counts_only_what_lies_inside_the_section() -> None:
    from remora.proxy.http.h1_codec import unterminated_line

    # Continued from an earlier read: the whole read is inside the section.
    assert unterminated_line(b"aaaa", 10, continued=True, anchored=False) == 14
    assert unterminated_line(b"aa\r\nbbb", 10, continued=True, anchored=False) == 3
    # Begun in this read: only bytes after a line the section ended here are its own.
    assert unterminated_line(b"body bytes GET / HTTP/1.1\r\nX: a", 0, False, True) == 4
    assert unterminated_line(b"body bytes GET /x", 0, continued=False, anchored=False) == 0
