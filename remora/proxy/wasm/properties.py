"""Envoy's attribute names for `proxy_get_property`, read from one exchange.

Values are encoded as Envoy encodes them for Wasm: strings as their bytes, integers as 8-byte
little-endian, booleans as one byte, durations and timestamps as int64 nanoseconds, and header
maps in the ABI's serialized map format. A property remora does not know, or one that has no
value yet (`response.code` before the response), is missing: the guest gets NOT_FOUND.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from remora.wasm.proxywasm.abi import encode_map
from remora.wasm.proxywasm.contexts import PropertyLookup

if TYPE_CHECKING:
    from remora.proxy.http.exchange import Exchange

_I64 = struct.Struct("<q")


def _int(value: int) -> bytes:
    return _I64.pack(value)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return address, 0


def stream_properties(exchange: Exchange) -> PropertyLookup:
    def lookup(path: tuple[bytes, ...]) -> bytes | None:
        if not path:
            return None
        getter = _ATTRIBUTES.get(path[:2]) or _ATTRIBUTES.get(path[:1])
        if getter is None:
            return None
        if path[:2] in _HEADER_MAPS and len(path) == 3:
            return _header(exchange, path[:2], path[2])
        return getter(exchange)

    return lookup


def _header(exchange: Exchange, which: tuple[bytes, ...], name: bytes) -> bytes | None:
    key = name.decode("latin-1").lower()
    headers = exchange.request_headers if which[0] == b"request" else exchange.response_headers
    values = [v for n, v in headers if n == key]
    return ",".join(values).encode("latin-1") if values else None


def _request_headers(exchange: Exchange) -> bytes:
    return encode_map([(n.encode(), v.encode("latin-1")) for n, v in exchange.request_headers])


def _response_headers(exchange: Exchange) -> bytes | None:
    if not exchange.status:
        return None
    return encode_map([(n.encode(), v.encode("latin-1")) for n, v in exchange.response_headers])


def _url_path(exchange: Exchange) -> bytes:
    return exchange.request.target.partition("?")[0].encode("latin-1")


def _source(exchange: Exchange) -> tuple[str, int]:
    return _split(exchange.downstream.remote_address)


def _destination(exchange: Exchange) -> tuple[str, int]:
    transport = exchange.downstream.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    if not local:
        return "", 0
    return str(local[0]), int(local[1])


def _header_value(name: str) -> Callable[[Exchange], bytes | None]:
    def get(exchange: Exchange) -> bytes | None:
        values = [v for n, v in exchange.request_headers if n == name]
        return values[0].encode("latin-1") if values else None

    return get


def _response_code(exchange: Exchange) -> bytes | None:
    return _int(exchange.status) if exchange.status else None


def _cluster_name(exchange: Exchange) -> bytes | None:
    cluster = exchange.cluster
    if cluster is not None:
        return cluster.name.encode()
    route = exchange.route
    return route.cluster.encode() if route is not None and route.cluster else None


def _route_name(exchange: Exchange) -> bytes | None:
    route = exchange.route
    return route.route_name.encode() if route is not None and route.route_name else None


def _upstream_address(exchange: Exchange) -> bytes | None:
    host = exchange.host
    return str(host).encode() if host is not None else None


def _tls_version(exchange: Exchange) -> bytes | None:
    tls = exchange.downstream.tls_facts
    return tls.version.encode() if tls is not None and tls.version else None


def _peer_uri_san(exchange: Exchange) -> bytes | None:
    tls = exchange.downstream.tls_facts
    peer = tls.peer if tls is not None else None
    if peer is None or not peer.uri_sans:
        return None
    return peer.uri_sans[0].encode()


_ATTRIBUTES: dict[tuple[bytes, ...], Callable[[Exchange], bytes | None]] = {
    (b"request", b"path"): lambda e: e.request.target.encode("latin-1"),
    (b"request", b"url_path"): _url_path,
    (b"request", b"host"): lambda e: e.authority.encode("latin-1"),
    (b"request", b"scheme"): lambda e: e.downstream.scheme.encode(),
    (b"request", b"method"): lambda e: e.request.method.encode("latin-1"),
    (b"request", b"headers"): _request_headers,
    (b"request", b"referer"): _header_value("referer"),
    (b"request", b"useragent"): _header_value("user-agent"),
    (b"request", b"id"): lambda e: e.request_id.encode() if e.request_id else None,
    (b"request", b"protocol"): lambda e: (
        b"HTTP/2" if e.h2 is not None else f"HTTP/{e.request.version}".encode()
    ),
    (b"request", b"time"): lambda e: _int(int(e.request.start_time * 1e9)),
    (b"request", b"duration"): lambda e: _int(int((time.monotonic() - e.request.started_at) * 1e9)),
    (b"request", b"size"): lambda e: _int(e.request.content_length or 0),
    (b"request", b"total_size"): lambda e: _int(e.request.body.total),
    (b"response", b"code"): _response_code,
    (b"response", b"code_details"): lambda e: (
        e.response_code_details.encode() if e.response_code_details else None
    ),
    (b"response", b"flags"): lambda e: e.response_flags.encode() if e.response_flags else None,
    (b"response", b"headers"): _response_headers,
    (b"response", b"size"): lambda e: _int(e.bytes_sent),
    (b"source", b"address"): lambda e: e.downstream.remote_address.encode(),
    (b"source", b"port"): lambda e: _int(_source(e)[1]),
    (b"destination", b"address"): lambda e: (
        f"{_destination(e)[0]}:{_destination(e)[1]}".encode() if _destination(e)[0] else None
    ),
    (b"destination", b"port"): lambda e: _int(_destination(e)[1]) if _destination(e)[0] else None,
    (b"connection", b"mtls"): lambda e: (
        b"\x01"
        if e.downstream.tls_facts is not None and e.downstream.tls_facts.peer_der
        else b"\x00"
    ),
    (b"connection", b"tls_version"): _tls_version,
    (b"connection", b"uri_san_peer_certificate"): _peer_uri_san,
    (b"upstream", b"address"): _upstream_address,
    (b"cluster_name",): _cluster_name,
    (b"route_name",): _route_name,
}
_HEADER_MAPS = frozenset({(b"request", b"headers"), (b"response", b"headers")})
