"""The control plane's admin endpoint: NACKs with their reasons, snapshots, streams, metrics,
the config source's state, the endpoint-registration API, and the CA's status and rotation.

A deliberately tiny HTTP/1.0 responder (one request per connection, bodies by Content-Length):
operators, instances and tests use it with curl or httpx; it carries no traffic worth a
framework. It has no authentication: bind it to an address only trusted parties reach.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remora.xds.cache import SnapshotCache
from remora.xds.registration import RegistrationApi, RegistrationError
from remora.xds.server import XdsServer

if TYPE_CHECKING:
    from remora.xds.ca.api import SigningApi

_MAX_BODY = 64 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 413: "Content Too Large"}  # fmt: skip
_REGISTRATIONS = "/registrations"
_CA = "/ca"
_ROTATE = {"/ca/rotate/prepare", "/ca/rotate/activate", "/ca/rotate/withdraw"}


class ControlPlaneAdmin:
    def __init__(
        self,
        cache: SnapshotCache,
        xds: XdsServer,
        source_error: Callable[[], str],
        source_info: Callable[[], dict[str, Any]] | None = None,
        registrations: RegistrationApi | None = None,
        ca: SigningApi | None = None,
        after_rotation: Callable[[], object] | None = None,
    ):
        self.cache = cache
        self.xds = xds
        self.source_error = source_error
        self.source_info = source_info
        self.registrations = registrations
        self.ca = ca
        self.after_rotation = after_rotation  # a rotation step changed the trust bundle
        self._server: asyncio.Server | None = None
        self.port = 0

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str, str]:
        """(status, content type, body) for one request; `path` may carry a query string."""
        path, _, query = path.partition("?")
        if path == _CA or path.startswith(_CA + "/"):
            return self._ca(method, path, query)
        if path == _REGISTRATIONS or path.startswith(_REGISTRATIONS + "/"):
            return self._registrations(method, path, body)
        if method != "GET":
            return _json(405, {"error": f"{method} {path}: only GET"})
        return self.render(path)

    def _registrations(self, method: str, path: str, body: bytes) -> tuple[int, str, str]:
        api = self.registrations
        if api is None:
            return _json(404, {"error": "endpoint registration is not enabled"})
        parts = path[len(_REGISTRATIONS) :].strip("/").split("/") if path != _REGISTRATIONS else []
        try:
            if method == "GET" and not parts:
                return _json(200, api.listing())
            if method == "POST" and not parts:
                return _json(200, api.register(body))
            if method == "DELETE" and len(parts) == 3:
                return _json(200, api.deregister(*parts))
        except RegistrationError as exc:
            return _json(exc.status, {"error": str(exc)})
        usage = (
            f"use POST {_REGISTRATIONS} (register or heartbeat), "
            f"DELETE {_REGISTRATIONS}/SERVICE/ADDRESS/PORT, or GET {_REGISTRATIONS}"
        )
        return _json(405, {"error": f"{method} {path}: {usage}"})

    def _ca(self, method: str, path: str, query: str) -> tuple[int, str, str]:
        """GET /ca, and the three rotation steps as POSTs: each answers with the new status or
        409 and why the step cannot be taken now."""
        from remora.xds.ca.errors import CaError

        if self.ca is None:
            return _json(404, {"error": "no CA runs (start the control plane with --ca-dir)"})
        authority = self.ca.authority
        if path == _CA and method == "GET":
            return _json(200, self.ca.status())
        if path in _ROTATE and method == "POST":
            step = path.rsplit("/", 1)[1]
            try:
                if step == "prepare":
                    authority.prepare_rotation()
                elif step == "activate":
                    authority.activate_rotation()
                else:
                    authority.withdraw_old(force="force=1" in query.split("&"))
            except CaError as exc:
                return _json(409, {"error": str(exc)})
            logging.getLogger("remora.ca").info("rotation: %s done", step)
            if self.after_rotation is not None:
                self.after_rotation()
            return _json(200, self.ca.status())
        if path == _CA or path in _ROTATE:
            usage = f"use GET {_CA}" if path == _CA else f"use POST {path}"
            return _json(405, {"error": f"{method} {path}: {usage}"})
        return _json(404, {"error": f"no such CA endpoint {path!r}"})

    def render(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) for a GET of `path`."""
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", self.xds.stats.render(self.cache.nacks.total)
        body: Any
        if path == "/nacks":
            body = {"total": self.cache.nacks.total,
                    "recent": [n.as_dict() for n in self.cache.nacks.recent]}  # fmt: skip
        elif path == "/snapshots":
            body = {
                group: {"label": snap.label, "versions": snap.versions(),
                        "resources": {t: sorted(snap.resources(t)) for t in snap.type_urls()}}
                for group, snap in self.cache.snapshots().items()
            }  # fmt: skip
            body = {"snapshots": body, "source_error": self.source_error()}
        elif path == "/streams":
            body = [s.as_dict() for s in self.xds.streams.values()]
        elif path == "/source" and self.source_info is not None:
            body = self.source_info()
        elif path in ("/", "/ready"):
            body = {"endpoints": ["/nacks", "/snapshots", "/streams", "/metrics", "/source",
                                  _REGISTRATIONS, _CA]}  # fmt: skip
        else:
            return 404, "text/plain", "not found\n"
        return 200, "application/json", json.dumps(body, indent=2, sort_keys=True) + "\n"

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip()) if value.strip().isdigit() else -1
            if len(parts) < 2 or length < 0:
                status, kind, body = _json(400, {"error": "malformed request"})
            elif length > _MAX_BODY:
                status, kind, body = _json(413, {"error": f"body over {_MAX_BODY} bytes"})
            else:
                data = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
                status, kind, body = self.handle(parts[0], parts[1], data)
            encoded = body.encode()
            writer.write(
                f"HTTP/1.0 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"content-type: {kind}\r\ncontent-length: {len(encoded)}\r\n"
                "connection: close\r\n\r\n".encode()
                + encoded
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()


def _json(status: int, body: Any) -> tuple[int, str, str]:
    return status, "application/json", json.dumps(body, indent=2, sort_keys=True) + "\n"
