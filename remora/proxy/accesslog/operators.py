"""Envoy's command operators (`%NAME(param):max%`), each compiled to a small function of a record.

Every operator is resolved at config time into a `ValueFn`: header names are lowercased,
pseudo-header lookups become attribute reads, time formats are pre-split. A value of None means
"not set" and is rendered by the caller ("-" in text, null in JSON). Integers stay integers so that
JSON output can be typed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from remora.proxy.accesslog import timefmt
from remora.proxy.accesslog.record import AccessLogRecord
from remora.proxy.tls.facts import TlsFacts
from remora.proxy.tls.peer import PeerCertificate

Value = str | int | None
ValueFn = Callable[[AccessLogRecord], Value]
Headers = list[tuple[str, str]]


class OperatorError(ValueError):
    """A command operator that cannot be compiled; the message says what is wrong with it."""


class Param(Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    param: Param
    truncatable: bool
    build: Callable[[str | None], ValueFn]


def _find(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _request_header(name: str) -> ValueFn:
    if name == ":method":
        return lambda r: r.method
    if name == ":path":
        return lambda r: r.path
    if name == ":scheme":
        return lambda r: r.scheme
    if name in (":authority", "host"):
        # HTTP/1.1 carries :authority as Host; the data path keeps it as an attribute only.
        return lambda r: (
            r.authority if r.authority is not None else _find(r.request_headers, "host")
        )
    return lambda r: _find(r.request_headers, name)


def _response_header(name: str) -> ValueFn:
    if name == ":status":
        return lambda r: str(r.response_code) if r.response_code else None
    return lambda r: _find(r.response_headers, name)


def _header_operator(lookup: Callable[[str], ValueFn]) -> Callable[[str | None], ValueFn]:
    """`X` or `X?Y`: Y is consulted only when X is absent."""

    def build(param: str | None) -> ValueFn:
        assert param is not None
        names = param.split("?")
        if len(names) > 2:
            raise OperatorError("more than one alternative header specified")
        if any(not n for n in names):
            raise OperatorError("empty header name")
        first = lookup(names[0].lower())
        if len(names) == 1:
            return first
        second = lookup(names[1].lower())

        def either(record: AccessLogRecord) -> Value:
            value = first(record)
            return value if value is not None else second(record)

        return either

    return build


def _without_port(address: str | None) -> str | None:
    if address is None:
        return None
    host, sep, _port = address.rpartition(":")
    if not sep:
        return address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _port(address: str | None) -> int | None:
    if address is None:
        return None
    _host, sep, port = address.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def _millis(value: float | None) -> int | None:
    return None if value is None else int(value)


def _start_time(param: str | None) -> ValueFn:
    render = timefmt.compile_formatter(param)
    return lambda r: render(r.start_time)


def _constant(value: str) -> ValueFn:
    return lambda _r: value


def _plain(fn: ValueFn) -> Callable[[str | None], ValueFn]:
    return lambda _param: fn


_FIELDS: dict[str, ValueFn] = {
    "RESPONSE_CODE": lambda r: r.response_code,
    "RESPONSE_FLAGS": lambda r: r.response_flags if r.response_flags not in ("", "-") else None,
    "DURATION": lambda r: int(r.duration_ms),
    "REQUEST_DURATION": lambda r: _millis(r.request_duration_ms),
    "RESPONSE_DURATION": lambda r: _millis(r.response_duration_ms),
    "UPSTREAM_HOST": lambda r: r.upstream_host,
    "UPSTREAM_CLUSTER": lambda r: r.upstream_cluster,
    "BYTES_RECEIVED": lambda r: r.bytes_received,
    "BYTES_SENT": lambda r: r.bytes_sent,
    "PROTOCOL": lambda r: r.protocol,
    "ROUTE_NAME": lambda r: r.route_name,
    "RESPONSE_CODE_DETAILS": lambda r: r.response_code_details,
    "CONNECTION_ID": lambda r: r.connection_id,
    "DOWNSTREAM_REMOTE_ADDRESS": lambda r: r.downstream_remote_address,
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda r: _without_port(r.downstream_remote_address),
    "DOWNSTREAM_REMOTE_PORT": lambda r: _port(r.downstream_remote_address),
    "DOWNSTREAM_LOCAL_ADDRESS": lambda r: r.downstream_local_address,
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": lambda r: _without_port(r.downstream_local_address),
    "DOWNSTREAM_LOCAL_PORT": lambda r: _port(r.downstream_local_address),
}


def _joined(values: tuple[str, ...] | None) -> str | None:
    return ",".join(values) if values else None


def _peer_field(read: Callable[[PeerCertificate], Value]) -> ValueFn:
    def value(record: AccessLogRecord) -> Value:
        tls = record.tls
        peer = tls.peer if tls is not None else None
        return read(peer) if peer is not None else None

    return value


def _local_field(read: Callable[[PeerCertificate], Value]) -> ValueFn:
    def value(record: AccessLogRecord) -> Value:
        tls = record.tls
        local = tls.local if tls is not None else None
        return read(local) if local is not None else None

    return value


def _tls_field(read: Callable[[TlsFacts], Value]) -> ValueFn:
    return lambda r: read(r.tls) if r.tls is not None else None


# Envoy's TLS operators: None ("-") on a plaintext connection or without a peer certificate.
_FIELDS.update(
    {
        "DOWNSTREAM_PEER_URI_SAN": _peer_field(lambda p: _joined(p.uri_sans)),
        "DOWNSTREAM_PEER_DNS_SAN": _peer_field(lambda p: _joined(p.dns_sans)),
        "DOWNSTREAM_PEER_IP_SAN": _peer_field(lambda p: _joined(p.ip_sans)),
        "DOWNSTREAM_PEER_EMAIL_SAN": _peer_field(lambda p: _joined(p.email_sans)),
        "DOWNSTREAM_PEER_SUBJECT": _peer_field(lambda p: p.subject or None),
        "DOWNSTREAM_PEER_ISSUER": _peer_field(lambda p: p.issuer or None),
        "DOWNSTREAM_PEER_SERIAL": _peer_field(lambda p: p.serial),
        "DOWNSTREAM_PEER_FINGERPRINT_256": _peer_field(lambda p: p.sha256),
        "DOWNSTREAM_LOCAL_URI_SAN": _local_field(lambda p: _joined(p.uri_sans)),
        "DOWNSTREAM_LOCAL_DNS_SAN": _local_field(lambda p: _joined(p.dns_sans)),
        "DOWNSTREAM_LOCAL_SUBJECT": _local_field(lambda p: p.subject or None),
        "DOWNSTREAM_TLS_VERSION": _tls_field(lambda t: t.version),
        "DOWNSTREAM_TLS_CIPHER": _tls_field(lambda t: t.cipher),
        "REQUESTED_SERVER_NAME": _tls_field(lambda t: t.server_name),
    }
)

OPERATORS: dict[str, OperatorSpec] = {
    name: OperatorSpec(Param.NONE, False, _plain(fn)) for name, fn in _FIELDS.items()
}
OPERATORS.update(
    {
        "START_TIME": OperatorSpec(Param.OPTIONAL, False, _start_time),
        "REQ": OperatorSpec(Param.REQUIRED, True, _header_operator(_request_header)),
        "REQUEST_HEADER": OperatorSpec(Param.REQUIRED, True, _header_operator(_request_header)),
        "RESP": OperatorSpec(Param.REQUIRED, True, _header_operator(_response_header)),
        "RESPONSE_HEADER": OperatorSpec(Param.REQUIRED, True, _header_operator(_response_header)),
        "HOSTNAME": OperatorSpec(Param.NONE, False, lambda _p: _constant(socket.gethostname())),
    }
)


def compile_operator(name: str, param: str | None, max_length: int | None) -> ValueFn:
    """Resolve one `%NAME(param):max_length%`; raises OperatorError naming the problem."""
    spec = OPERATORS.get(name)
    if spec is None:
        raise OperatorError(f"unknown command operator %{name}%")
    if spec.param is Param.NONE and param is not None:
        raise OperatorError(f"%{name}% does not take a parameter")
    if spec.param is Param.REQUIRED and not param:
        raise OperatorError(f"%{name}% requires a parameter, e.g. %{name}(X)%")
    if max_length is not None and not spec.truncatable:
        raise OperatorError(f"%{name}% does not support a maximum length")
    fn = spec.build(param)
    if max_length is None:
        return fn

    def truncated(record: AccessLogRecord) -> Value:
        value = fn(record)
        return value[:max_length] if isinstance(value, str) else value

    return truncated
