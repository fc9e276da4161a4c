"""What a connection's first bytes say before any TLS engine sees them (sans-IO).

The `tls_inspector` listener filter needs the transport protocol, the server name (SNI) and the
offered ALPN protocols to pick a filter chain, before the chain's TLS context, if any, exists
for the connection. OpenSSL gives no way to read a ClientHello without starting a handshake, so
the few fields needed are read here from the record layer (RFC 8446 section 4.1.2, RFC 6066
section 3 for SNI, RFC 7301 for ALPN). Anything malformed still counts as TLS with no SNI: the
chain's own handshake then refuses it with a proper alert.
"""

from __future__ import annotations

from dataclasses import dataclass

_HANDSHAKE = 0x16
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
# Envoy's default `max_client_hello_size`.
MAX_CLIENT_HELLO = 64 * 1024
# A real ClientHello fits one record, a few at most; a peer that splits one into hundreds of
# tiny records would make every arriving segment re-assemble them all (a CPU sink).
MAX_RECORDS = 16


@dataclass(frozen=True, slots=True)
class ClientHello:
    is_tls: bool
    server_name: str = ""
    alpn: tuple[str, ...] = ()
    too_large: bool = False
    malformed: bool = False


NOT_TLS = ClientHello(False)


def inspect(data: bytes | bytearray, limit: int = MAX_CLIENT_HELLO) -> ClientHello | None:
    """The ClientHello's facts, or None while more bytes are needed."""
    if not data:
        return None
    if data[0] != _HANDSHAKE:
        return NOT_TLS
    if len(data) < 3:
        return None
    if data[1] != 3:  # SSL 3.0 and every TLS version put 3 here
        return NOT_TLS
    # Reassemble the handshake message from as many handshake records as it spans.
    message = bytearray()
    offset = 0
    records = 0
    while len(data) >= offset + 5:
        records += 1
        if records > MAX_RECORDS:
            return ClientHello(True, malformed=True)
        if data[offset] != _HANDSHAKE:
            return ClientHello(True, malformed=True)
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if length == 0:
            return ClientHello(True, malformed=True)
        end = offset + 5 + length
        if len(data) < end:
            break
        message += data[offset + 5 : end]
        offset = end
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                return ClientHello(True, malformed=True)
            needed = 4 + int.from_bytes(message[1:4], "big")
            if needed > limit:
                return _too_large()
            if len(message) >= needed:
                return _parse(bytes(message[4:needed]))
    # Records of at most 64 KiB each: a hello within `limit` never needs more than this.
    if len(data) > limit + 2 * 65536:
        return _too_large()
    return None


def _too_large() -> ClientHello:
    return ClientHello(True, too_large=True)


class _Malformed(Exception):
    pass


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise _Malformed
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, size: int) -> _Reader:
        return _Reader(self.take(self.number(size)))

    @property
    def done(self) -> bool:
        return self.offset >= len(self.data)


def _parse(body: bytes) -> ClientHello:
    try:
        reader = _Reader(body)
        reader.take(2 + 32)  # legacy_version, random
        reader.vector(1)  # legacy_session_id
        reader.vector(2)  # cipher_suites
        reader.vector(1)  # legacy_compression_methods
        if reader.done:
            return ClientHello(True)  # no extensions at all (SSL 3.0 style)
        extensions = reader.vector(2)
        server_name = ""
        alpn: tuple[str, ...] = ()
        while not extensions.done:
            kind = extensions.number(2)
            content = extensions.vector(2)
            if kind == _EXT_SERVER_NAME:
                names = content.vector(2)
                while not names.done:
                    name_type = names.number(1)
                    name = names.vector(2).data
                    if name_type == 0 and not server_name:
                        server_name = name.decode("ascii").lower()
            elif kind == _EXT_ALPN:
                protocols = content.vector(2)
                found = []
                while not protocols.done:
                    found.append(protocols.vector(1).data.decode("latin-1"))
                alpn = tuple(found)
        return ClientHello(True, server_name=server_name, alpn=alpn)
    except (_Malformed, UnicodeDecodeError):
        return ClientHello(True, malformed=True)
