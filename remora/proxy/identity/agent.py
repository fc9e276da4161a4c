"""The sidecar's identity agent: gets the workload's SVID from the control plane's CA and keeps it
current.

`remora proxy --identity-ca https://HOST:PORT --identity-token-file F --identity-ca-bundle B`
makes a key and a CSR, sends the CSR with the workload's token (a bearer credential the mesh
config grants an identity) over TLS verified against B, and holds the answer as the static
secret `default`. At half the certificate's life it does so again with a new key; the new SVID
reaches new handshakes through the proxy's secret update, and open connections keep theirs. A
failed renewal is retried with backoff while the current SVID serves; the log says when it is
about to expire.

The first SVID is fetched before the bootstrap is compiled (`obtain_first`), so a bootstrap and
xDS resources alike may name `default`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import random
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from remora.proxy.identity.svid import SECRET_NAME, Request, Svid, SvidError, accept

if TYPE_CHECKING:
    from remora.proxy.server import ProxyServer

log = logging.getLogger("remora.identity")

SVID_PATH = "/v1/svid"
_TIMEOUT = 10.0
_MAX_ANSWER = 1 << 20


class IdentityError(Exception):
    """What stops the agent from getting an SVID, said for an operator."""


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    ca_url: str
    token_file: Path
    ca_bundle: Path

    def check(self) -> None:
        """Raises IdentityError for what no retry can fix: a wrong URL or a missing file."""
        url = urllib.parse.urlsplit(self.ca_url)
        if url.scheme != "https" or not url.hostname:
            raise IdentityError(
                f"--identity-ca {self.ca_url!r}: expected https://HOST:PORT (the control "
                "plane's --ca-address)"
            )
        try:
            url.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise IdentityError(f"--identity-ca {self.ca_url!r}: bad port") from None
        self.token()
        self.bundle()

    def token(self) -> str:
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise IdentityError(
                f"--identity-token-file {self.token_file}: {exc.strerror or exc}"
            ) from None
        if not token:
            raise IdentityError(f"--identity-token-file {self.token_file}: the file is empty")
        return token

    def bundle(self) -> bytes:
        try:
            data = self.ca_bundle.read_bytes()
        except OSError as exc:
            raise IdentityError(
                f"--identity-ca-bundle {self.ca_bundle}: {exc.strerror or exc}"
            ) from None
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise IdentityError(
                f"--identity-ca-bundle {self.ca_bundle}: no PEM certificate in the file"
            )
        return data


class IdentityAgent:
    def __init__(self, config: IdentityConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.svid: Svid | None = None
        self.renewals = 0  # SVIDs obtained after the first
        self.failures = 0
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None

    # -- one exchange with the CA (blocking: run it in a thread) -------------------------------
    def obtain(self) -> Svid:
        request = Request.new()
        answer = self._post(request.body())
        try:
            return accept(request, answer, time.time())
        except SvidError as exc:
            raise IdentityError(f"{self.config.ca_url}: {exc}") from None

    def _context(self) -> ssl.SSLContext:
        # Only the mesh's roots: the token must not go to whoever holds a publicly trusted
        # certificate for the CA's name (passing cadata keeps the system store out).
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cadata=self.config.bundle().decode()
        )
        if self.svid is not None:  # the CA's newer roots, as its last answer listed them
            context.load_verify_locations(cadata=self.svid.bundle_pem.decode())
        return context

    def _post(self, body: bytes) -> bytes:
        url = urllib.parse.urlsplit(self.config.ca_url)
        assert url.hostname is not None
        connection = http.client.HTTPSConnection(
            url.hostname, url.port or 443, timeout=_TIMEOUT, context=self._context()
        )
        try:
            connection.request(
                "POST",
                SVID_PATH,
                body=body,
                headers={
                    "authorization": f"Bearer {self.config.token()}",
                    "content-type": "application/json",
                },
            )
            response = connection.getresponse()
            answer = response.read(_MAX_ANSWER + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise IdentityError(f"{self.config.ca_url}: {exc}") from None
        finally:
            connection.close()
        if len(answer) > _MAX_ANSWER:
            raise IdentityError(f"{self.config.ca_url}: the answer is over 1 MiB")
        if response.status != 200:
            reason = answer.decode(errors="replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                reason = str(json.loads(answer)["error"])
            raise IdentityError(f"{self.config.ca_url} refused: {response.status} {reason[:300]}")
        return answer

    def obtain_first(self, wait: float) -> Svid:
        """The first SVID, retrying for up to `wait` seconds (the control plane may be starting
        too); raises IdentityError with the last reason after that."""
        deadline = time.monotonic() + wait
        delay = 0.25
        while True:
            try:
                self.svid = self.obtain()
            except IdentityError as exc:
                self.failures += 1
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("no SVID yet (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            log.info(
                "SVID %s (serial %x) until %s",
                self.svid.spiffe_id, self.svid.serial, _when(self.svid.not_after),
            )  # fmt: skip
            return self.svid

    # -- rotation ------------------------------------------------------------------------------
    def start(self, server: ProxyServer) -> None:
        self._task = asyncio.create_task(self._renew_forever(server), name="identity-agent")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _renew_forever(self, server: ProxyServer) -> None:
        delay = 1.0
        while True:
            assert self.svid is not None
            await asyncio.sleep(max(0.0, self.svid.renew_at(self._rng) - time.time()))
            while True:
                try:
                    fresh = await asyncio.to_thread(self.obtain)
                    async with server.update_lock:
                        await server.update_secrets(local={SECRET_NAME: fresh.secret()})
                except Exception as exc:  # anything: the current SVID serves, the agent goes on
                    self.failures += 1
                    left = self.svid.not_after - time.time()
                    log.error(
                        "SVID renewal failed (%s); retrying in %.0f s, the current one %s",
                        exc, delay,
                        f"expires in {left:.0f} s" if left > 0 else "has EXPIRED",
                    )  # fmt: skip
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
                    continue
                break
            delay = 1.0
            self.svid = fresh
            self.renewals += 1
            log.info(
                "SVID renewed: %s (serial %x) until %s",
                fresh.spiffe_id, fresh.serial, _when(fresh.not_after),
            )  # fmt: skip


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
