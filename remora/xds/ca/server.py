"""The signing API's HTTPS shell on asyncio, and the upkeep of its own certificate.

The endpoint's certificate is issued by the CA itself, so a workload that holds the trust
bundle (from `GET /v1/bundle` over a channel it trusts, or from the CA directory) can verify it.
It is reissued before it expires and as soon as the signer changes (a rotation's activation):
`load_cert_chain` on the live context makes every new handshake use the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from remora.xds.ca import http1
from remora.xds.ca.api import MAX_BODY, SigningApi

log = logging.getLogger("remora.ca")
RENEW_FRACTION = 2 / 3  # of the serving certificate's lifetime
CHECK_INTERVAL = 1.0


class CaServer:
    def __init__(self, api: SigningApi, hosts: Sequence[str]) -> None:
        """`hosts`: the DNS names and IP addresses clients use to reach this endpoint."""
        self.api = api
        self.hosts = list(hosts)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.renew_at = 0.0
        self.served_signer = ""
        self.port = 0
        self._server: asyncio.Server | None = None
        self.refresh()

    def refresh(self) -> None:
        """Issue a new serving certificate and put it on the context for new handshakes."""
        chain, key = self.api.authority.serving_certificate(self.hosts)
        leaf = x509.load_pem_x509_certificate(chain)
        # From now, not from not_before: that is backdated for clock skew.
        start = time.time()
        end = leaf.not_valid_after_utc.timestamp()
        # The key touches the disk only inside a private temporary directory, for an instant:
        # the ssl module loads certificates from files alone.
        with tempfile.TemporaryDirectory(prefix="remora-ca-") as scratch:
            cert_path, key_path = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
            cert_path.write_bytes(chain)
            key_path.touch(mode=0o600)
            key_path.write_bytes(key)
            self.context.load_cert_chain(cert_path, key_path)
        self.renew_at = start + (end - start) * RENEW_FRACTION
        self.served_signer = self.api.authority.signer_fingerprint
        log.info(
            "serving certificate for %s until %s",
            ", ".join(self.hosts),
            leaf.not_valid_after_utc.isoformat(),
        )

    def refresh_if_due(self, now: float | None = None) -> bool:
        """Reissue if the signer changed or two thirds of the lifetime passed; True if it did."""
        now = time.time() if now is None else now
        if self.api.authority.signer_fingerprint == self.served_signer and now < self.renew_at:
            return False
        self.refresh()
        return True

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._handle, host, port, ssl=self.context, limit=http1.MAX_HEAD,
            ssl_handshake_timeout=http1.HEAD_TIMEOUT,
        )  # fmt: skip
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def maintain(self) -> None:
        """Keep the serving certificate fresh; runs until cancelled."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                self.refresh_if_due()
            except Exception:  # a failed renewal must not end the upkeep: retry next tick
                log.exception("cannot renew the CA's serving certificate")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else None
        head = False
        try:
            try:
                request = await http1.read_request(reader, MAX_BODY)
                head = request.method == "HEAD"
                # In a worker thread: signing writes the CA's ledger to disk, and the xDS
                # streams share this loop.
                status, body = await asyncio.to_thread(
                    self.api.handle,
                    request.method, request.target, request.headers, request.body, peer,
                )  # fmt: skip
            except http1.HttpError as exc:
                status, body = exc.status, {"error": exc.message}
            except asyncio.IncompleteReadError:
                return
            except Exception:
                log.exception("signing API request from %s failed", peer)
                status, body = 500, {"error": "internal error (logged by the CA)"}
            writer.write(http1.encode_response(status, body, head))
            await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()
