"""TLS between a socket transport and the protocol above it, on `ssl.SSLObject` and memory BIOs.

Why not `loop.create_server(ssl=...)`: the event loop's own TLS hides what a mesh needs. A
failed handshake never reaches the application protocol, so it could not be counted under
Envoy's `ssl.*` stats or logged with its reason; the peer's certificate could not be checked
against SAN matchers and pins before the first byte passes; and a listener that inspects the
ClientHello first (to pick a filter chain) must hand the bytes it already read to the TLS
engine, which only a memory BIO allows.

`TlsLayer` is the socket transport's protocol and, to the protocol above, its transport: the
HTTP connection manager, tcp_proxy and the upstream pool use it as they use a plain one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

from remora.proxy.tls.client_hello import MAX_CLIENT_HELLO
from remora.proxy.tls.client_hello import inspect as inspect_client_hello
from remora.proxy.tls.config import TlsContext
from remora.proxy.tls.facts import TlsFacts
from remora.proxy.tls.peer import PeerCertificate, describe_der
from remora.proxy.tls.stats import FAIL_VERIFY_ERROR, FAIL_VERIFY_NO_CERT, TlsStats

log = logging.getLogger("remora.tls")

_HANDSHAKING, _OPEN, _CLOSING, _CLOSED = range(4)
# One record's plaintext at most (RFC 8446 section 5.1), which is all one SSL_read returns:
# `SSLObject.read(n)` allocates n bytes first, and a larger n made every read an mmap/munmap
# pair (glibc maps blocks over 128 KiB) that cost a third of the handshake path.
_READ_SIZE = 16 * 1024


class TlsHandshakeError(ConnectionError):
    """A handshake that failed or a peer refused after it; the message says why."""


class _LogBudget:
    """At most `rate` handshake-failure lines a second, so a flood of bad clients cannot turn
    the log into the bottleneck; the number left out is reported with the next line."""

    def __init__(self, rate: int = 20) -> None:
        self.rate = rate
        self.second = 0
        self.used = 0
        self.suppressed = 0

    def log(self, message: str, *args: object) -> None:
        now = int(time.monotonic())
        if now != self.second:
            self.second, self.used = now, 0
        if self.used >= self.rate:
            self.suppressed += 1
            return
        self.used += 1
        if self.suppressed:
            message += " (%d similar lines suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        log.info(message, *args)


_budget = _LogBudget()


def failure_reason(exc: ssl.SSLError) -> str | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FAIL_VERIFY_ERROR
    if exc.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return FAIL_VERIFY_NO_CERT
    return None


def describe_error(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if exc.reason:
        return exc.reason.lower().replace("_", " ")
    return str(exc)


class TlsLayer(asyncio.Transport, asyncio.Protocol):
    def __init__(
        self,
        app: asyncio.Protocol,
        tls: TlsContext,
        stats: TlsStats,
        where: str,
        server_hostname: str | None = None,
        handshake: asyncio.Future[None] | None = None,
        verify_name: str | None = None,
    ) -> None:
        super().__init__()
        self._app = app
        self._tls = tls
        self._stats = stats
        self._where = where  # "listener <name>" or "cluster <name>", for log lines
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = tls.context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=tls.server_side,
            # A per-connection name (auto_sni) wins over the context's configured `sni`.
            server_hostname=None if tls.server_side else (server_hostname or tls.sni),
        )
        self._raw: asyncio.Transport | None = None
        self._state = _HANDSHAKING
        self._paused = False  # the protocol above asked to stop reading
        self._received = False
        self._timer: asyncio.TimerHandle | None = None
        self._peer: PeerCertificate | None = None
        self._peer_der: bytes | None = None
        self._facts: TlsFacts | None = None
        self._eof_delivered = False
        self._keep_open = False
        self._server_name: str | None = None
        # The first bytes of a server-side handshake, until the ClientHello in them is read.
        self._hello: bytearray | None = bytearray() if tls.server_side else None
        # The upstream pool waits on this: connected means handshaken and accepted.
        self.handshake = handshake
        self.peer_address = ""
        self._verify_name = verify_name  # auto_san_validation: the name the peer must carry

    # -- what the connection's other layers read ----------------------------------------------
    @property
    def cipher(self) -> str | None:
        found = self._ssl.cipher()
        return found[0] if found else None

    @property
    def server_name(self) -> str | None:
        """The SNI: sent (client side) or received (server side, read from the ClientHello:
        Python's `SSLObject` has no getter for it, and its `sni_callback` raises into the
        void on a name that is not ASCII, so a hostile client could flood stderr)."""
        if not self._tls.server_side:
            sent: str | None = self._ssl.server_hostname
            return sent
        return self._server_name

    @property
    def facts(self) -> TlsFacts | None:
        """The handshake's outcome for the layers above; None until it is done."""
        if self._facts is None and self._app_connected:
            local = self._tls.certificates[0] if self._tls.certificates else None
            self._facts = TlsFacts(
                self._ssl.version(),
                self.cipher,
                self._ssl.selected_alpn_protocol(),
                self.server_name,
                self._peer_der,
                local,
            )
            self._facts._peer = self._peer
        return self._facts

    @property
    def peer(self) -> PeerCertificate | None:
        if self._peer is None and self._peer_der is not None:
            self._peer = describe_der(self._peer_der)
        return self._peer

    # -- asyncio.Protocol, facing the socket -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = self._raw = transport  # type: ignore[assignment]
        peer = raw.get_extra_info("peername")
        if peer:
            self.peer_address = f"{peer[0]}:{peer[1]}"
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._tls.handshake_timeout, self._handshake_timed_out)
        self._do_handshake()

    def data_received(self, data: bytes) -> None:
        if self._state == _CLOSED:
            return
        self._received = True
        self._incoming.write(data)
        if self._hello is not None:
            self._read_hello(data)
        if self._state == _HANDSHAKING:
            self._do_handshake()
            if self._state != _OPEN:
                return
        self._read()

    def eof_received(self) -> bool | None:
        if self._state == _HANDSHAKING:
            self._fail(None, "peer closed the connection during the handshake")
            return False
        self._incoming.write_eof()
        if self._state == _OPEN:
            self._read()  # the last records, then the end (once) to the protocol above
            if self._state == _OPEN:
                return self._deliver_eof()
        return False

    def _deliver_eof(self) -> bool:
        """The peer is done sending (close_notify, or a TCP FIN without one, which Envoy takes
        as the end too): tell the protocol above once; whether it keeps the socket open to
        finish writing is its answer."""
        if not self._eof_delivered:
            self._eof_delivered = True
            self._keep_open = bool(self._app.eof_received())
            if not self._keep_open:
                self.close()
        return self._keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        state, self._state = self._state, _CLOSED
        self._cancel_timer()
        if state == _HANDSHAKING:
            if self._received:
                self._stats.failed(None)
            self._settle(TlsHandshakeError("connection closed during the TLS handshake"))
            return
        if state in (_OPEN, _CLOSING) and self._app_connected:
            self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app_connected:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app_connected:
            self._app.resume_writing()

    # -- the handshake ------------------------------------------------------------------------
    def _read_hello(self, data: bytes) -> None:
        hello = self._hello
        assert hello is not None
        hello += data
        found = inspect_client_hello(hello)
        if found is None and len(hello) <= MAX_CLIENT_HELLO:
            return
        self._hello = None
        if found is not None and found.server_name:
            self._server_name = found.server_name

    _app_connected = False

    def _do_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._flush()  # the alert that tells the peer why
            self._fail(failure_reason(exc), describe_error(exc))
            return
        self._flush()
        self._cancel_timer()
        self._hello = None
        der = self._ssl.getpeercert(binary_form=True)
        self._peer_der = der
        validator = self._tls.validator
        if der is None and self._verify_name is not None:
            self._fail(FAIL_VERIFY_NO_CERT, "auto_san_validation, and no peer certificate")
            return
        if der is not None and (validator.checks_anything or self._verify_name is not None):
            peer = self.peer
            assert peer is not None
            refusal = validator.refusal(peer, self._verify_name)
            if refusal is not None:
                names = ", ".join(peer.uri_sans + peer.dns_sans + peer.ip_sans) or "none"
                self._fail(
                    refusal,
                    f"peer certificate refused ({refusal}): subject {peer.subject!r}, SANs {names}",
                )
                return
        self._stats.completed(self._ssl.version(), self.cipher, der is not None)
        self._state = _OPEN
        self._app_connected = True
        self._app.connection_made(self)
        self._settle(None)
        if self._state == _OPEN and self._incoming.pending:
            self._read()

    def _fail(self, reason: str | None, message: str) -> None:
        self._stats.failed(reason)
        side = "from" if self._tls.server_side else "to"
        _budget.log("TLS %s %s on %s failed: %s", side, self.peer_address, self._where, message)
        self._state = _CLOSED
        self._cancel_timer()
        self._settle(TlsHandshakeError(f"TLS_error: {message}"))
        if self._raw is not None:
            self._raw.close()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._state == _HANDSHAKING:
            self._fail(None, f"handshake not done in {self._tls.handshake_timeout:g}s")
            if self._raw is not None:
                self._raw.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _settle(self, exc: Exception | None) -> None:
        future = self.handshake
        if future is None or future.done():
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)

    # -- data -----------------------------------------------------------------------------------
    def _read(self) -> None:
        if self._paused:
            return
        chunks: list[bytes] = []
        closed_by_peer = False
        while True:
            try:
                chunk = self._ssl.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                closed_by_peer = True
                break
            except ssl.SSLError as exc:
                _budget.log("TLS %s on %s: %s", self.peer_address, self._where, describe_error(exc))
                self._flush()
                self.abort()
                return
            if not chunk:
                closed_by_peer = True
                break
            chunks.append(chunk)
            if not self._incoming.pending and not self._ssl.pending():
                break  # all read: spare the SSLWantReadError the next read would raise
        if self._outgoing.pending:
            self._flush()
        if chunks:
            self._app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if closed_by_peer and self._state == _OPEN:
            self._deliver_eof()

    def _flush(self) -> None:
        if self._outgoing.pending and self._raw is not None:
            self._raw.write(self._outgoing.read())

    # -- asyncio.Transport, facing the protocol above ---------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state != _OPEN:
            return
        view = memoryview(data)
        offset, size = 0, len(view)
        try:
            while offset < size:
                offset += self._ssl.write(view[offset:])
        except ssl.SSLError as exc:
            _budget.log("TLS %s on %s: %s", self.peer_address, self._where, describe_error(exc))
            self.abort()
            return
        self._flush()

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close")

    def close(self) -> None:
        if self._state in (_CLOSING, _CLOSED):
            return
        was_open = self._state == _OPEN
        self._state = _CLOSING
        self._cancel_timer()
        if was_open:
            with contextlib.suppress(ssl.SSLError):
                self._ssl.unwrap()  # queues close_notify; the peer's own one is not awaited
            self._flush()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        if self._state == _CLOSED:
            return
        self._state = _CLOSING if self._app_connected else _CLOSED
        self._cancel_timer()
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._state != _OPEN or self._raw is None or self._raw.is_closing()

    def pause_reading(self) -> None:
        self._paused = True
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._raw is not None:
            self._raw.resume_reading()
        if self._state == _OPEN and self._incoming.pending:
            self._read()

    def is_reading(self) -> bool:
        return not self._paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        assert self._raw is not None
        limits: tuple[int, int] = self._raw.get_write_buffer_limits()
        return limits

    def get_write_buffer_size(self) -> int:
        return 0 if self._raw is None else self._raw.get_write_buffer_size()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "tls":
            return self
        if name == "ssl_object":
            return self._ssl
        if name == "sslcontext":
            return self._tls.context
        if name == "peercert":
            return self._ssl.getpeercert() if self._state == _OPEN else default
        if name == "cipher":
            return self._ssl.cipher()
        if self._raw is None:
            return default
        return self._raw.get_extra_info(name, default)


async def open_connection(
    app: asyncio.Protocol,
    address: str,
    port: int,
    tls: TlsContext | None,
    stats: TlsStats | None,
    where: str,
    server_name: str | None = None,
    verify_name: str | None = None,
) -> asyncio.Transport:
    """Connect `app` to address:port, through TLS when `tls` is set: returns the transport
    `app` writes to once the handshake is done and the peer accepted, so callers time the
    whole of it as connecting. A TLS failure raises `TlsHandshakeError` (a `ConnectionError`)
    naming the reason. `server_name` is the SNI when the context sets none (`auto_sni`);
    `verify_name` the name the peer's certificate must carry (`auto_san_validation`)."""
    loop = asyncio.get_running_loop()
    if tls is None:
        transport, _ = await loop.create_connection(lambda: app, address, port)
        return transport
    assert stats is not None
    handshake: asyncio.Future[None] = loop.create_future()
    try:
        layer = TlsLayer(
            app, tls, stats, where, server_name, handshake=handshake, verify_name=verify_name
        )
    except (ValueError, UnicodeError):  # auto_sni: a request's host that is no server name
        raise TlsHandshakeError(
            f"TLS_error: {server_name!r} cannot be sent as a server name (SNI)"
        ) from None
    try:
        await loop.create_connection(lambda: layer, address, port)
        await handshake
    except BaseException:
        layer.abort()
        raise
    return layer


async def open_stream(
    address: str, port: int, tls: TlsContext | None, stats: TlsStats | None, where: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_connection` through the same TLS as the data path (health checks)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = await open_connection(protocol, address, port, tls, stats, where)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
