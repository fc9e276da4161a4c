"""The admin listener: HTTP/1.1 over an asyncio Protocol, parsed by h11.

Thin shell around `router.dispatch`: h11 turns bytes into request events, the router answers
synchronously, h11 frames the response. No task per request. Connections are kept alive (h11
decides when a request forbids it), closed after `idle_timeout` without traffic, and closed with a
400-class answer when the request is malformed, too large, or has an oversized body. Writes pause
reading when the transport buffer is full, so a client that pipelines without reading cannot make
the server buffer unbounded output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import cast

import h11

from .context import AdminContext
from .messages import AdminRequest, AdminResponse
from .router import FALLBACK_HEADERS, dispatch

_log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


class AdminServer:
    """Serves Envoy's admin endpoints for one `AdminContext` on host:port (0 picks a port)."""

    def __init__(
        self,
        context: AdminContext,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = 60.0,
    ) -> None:
        self._context = context
        self._host = host
        self._requested_port = port
        self._idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[_AdminProtocol] = set()

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on host:port, or on `sock`: a listening socket a hot restart inherited."""
        if self._server is not None:
            raise RuntimeError("admin server already started")
        loop = asyncio.get_running_loop()

        def factory() -> _AdminProtocol:
            return _AdminProtocol(self._context, self._connections, self._idle_timeout)

        if sock is not None:
            self._server = await loop.create_server(factory, sock=sock)
        else:
            self._server = await loop.create_server(factory, self._host, self._requested_port)

    def listening_fd(self) -> int | None:
        """The listening socket's descriptor, for a hot restart to share."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].fileno())

    @property
    def port(self) -> int:
        """The bound port (the kernel's choice when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("admin server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close every connection (pending response bytes are flushed)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.close()
        await server.wait_closed()


class _AdminProtocol(asyncio.Protocol):
    """One admin connection: h11 state, the request being read, and the idle timer."""

    def __init__(
        self,
        context: AdminContext,
        registry: set[_AdminProtocol],
        idle_timeout: float,
    ) -> None:
        self._context = context
        self._registry = registry
        self._idle_timeout = idle_timeout
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._request: h11.Request | None = None
        self._body_bytes = 0
        self._idle: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._registry.add(self)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        self._conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self._conn.receive_data(b"")
        self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._transport = None

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # request handling

    def _process(self) -> None:
        while self._transport is not None and not self._transport.is_closing():
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject(exc.error_status_hint, f"bad request: {exc}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._body_bytes = 0
                if self._conn.they_are_waiting_for_100_continue:
                    # curl sends `Expect: 100-continue` for larger POSTs and would stall ~1 s.
                    self._write(
                        self._conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                    )
            elif isinstance(event, h11.Data):
                # Admin requests carry no meaningful body; it is read and dropped, up to a limit.
                self._body_bytes += len(event.data)
                if self._body_bytes > MAX_BODY_BYTES:
                    self._reject(413, f"request body larger than {MAX_BODY_BYTES} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _respond(self) -> None:
        request, self._request = self._request, None
        assert request is not None
        admin_request = AdminRequest.from_target(
            request.method.decode("ascii", "replace"), request.target.decode("latin-1")
        )
        response = dispatch(self._context, admin_request)
        self._send(response, head_only=admin_request.method == "HEAD")
        if response.after is not None:
            asyncio.get_running_loop().call_soon(_run_after, response.after)
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
        else:
            self.close()

    def _send(self, response: AdminResponse, *, head_only: bool = False) -> None:
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            *response.headers,
        ]
        reason = _REASONS.get(response.status, b"")
        out = self._conn.send(
            h11.Response(status_code=response.status, headers=headers, reason=reason)
        )
        if response.body and not head_only:
            out += self._conn.send(h11.Data(data=response.body))
        out += self._conn.send(h11.EndOfMessage())
        self._write(out)

    def _write(self, data: bytes | None) -> None:
        if data and self._transport is not None:
            self._transport.write(data)

    def _reject(self, status: int, message: str) -> None:
        """Answer a request we cannot serve, then close: the stream position is unknown."""
        _log.debug("admin connection rejected: %s", message)
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            response = AdminResponse(
                status=status,
                body=(message + "\n").encode("utf-8"),
                headers=(("connection", "close"), *FALLBACK_HEADERS),
            )
            # h11 may refuse if the broken request left it unable to frame a response.
            with contextlib.suppress(h11.LocalProtocolError):
                self._send(response)
        self.close()

    def _arm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self._idle_timeout, self.close)


def _run_after(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:
        _log.exception("admin post-response action failed")
