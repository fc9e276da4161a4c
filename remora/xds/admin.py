"""The control plane's admin endpoint: NACKs with their reasons, snapshots, streams, metrics.

A deliberately tiny HTTP/1.0 responder (GET only, one response per connection): operators and
tests read it with curl; it carries no traffic worth a framework.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from remora.xds.cache import SnapshotCache
from remora.xds.server import XdsServer


class ControlPlaneAdmin:
    def __init__(self, cache: SnapshotCache, xds: XdsServer, source_error: Callable[[], str]):
        self.cache = cache
        self.xds = xds
        self.source_error = source_error
        self._server: asyncio.Server | None = None
        self.port = 0

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
        elif path in ("/", "/ready"):
            body = {"endpoints": ["/nacks", "/snapshots", "/streams", "/metrics"]}
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
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) < 2 or parts[0] != "GET":
                status, kind, body = 405, "text/plain", "GET only\n"
            else:
                status, kind, body = self.render(parts[1].split("?", 1)[0])
            data = body.encode()
            writer.write(
                f"HTTP/1.0 {status} {'OK' if status == 200 else 'Error'}\r\n"
                f"content-type: {kind}\r\ncontent-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
