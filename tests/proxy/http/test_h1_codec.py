from remora.proxy.http.h1_codec import (
    encode_chunk,
    encode_request_head,
    encode_response_head,
    response_has_body,
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
