"""Certificates rotated on disk (`watched_directory`): new handshakes get them, open
connections and requests in flight are untouched, and a bad rotation keeps the last good one."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography import x509

from tests.proxy.harness import admin_get, bootstrap, direct_routes, http_listener, running_proxy
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority, Issued


def install(directory: Path, issued: Issued) -> None:
    """Replace the pair as a secret volume does: write aside, then rename over."""
    for name, data in (("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)):
        temporary = directory / f".{name}.new"
        temporary.write_bytes(data)
        os.replace(temporary, directory / name)


async def served_serial(port: int, context: ssl.SSLContext) -> str:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_rotated_certificate_reaches_new_handshakes_only(tmp_path: Path) -> None:
    ca = Authority()
    secret = tmp_path / "secret"
    secret.mkdir()
    first, second = ca.issue(), ca.issue()
    install(secret, first)
    socket = tlsconfig.downstream(cert=secret / "tls.crt", key=secret / "tls.key")
    socket["typed_config"]["common_tls_context"]["tls_certificates"][0]["watched_directory"] = {
        "path": str(secret)
    }
    listener = tlsconfig.with_tls(http_listener(direct_routes("ok"), name="front"), socket)
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
    async with running_proxy(bootstrap([listener], [])) as proxy:
        port = proxy.listener_port("front")
        watcher = proxy.tls_watcher
        assert watcher is not None
        assert await served_serial(port, context) == format(first.cert.serial_number, "x")
        failures = 0
        done = asyncio.Event()

        async def load() -> int:
            """New connections and kept-alive ones, all through the rotation."""
            count = 0
            nonlocal failures
            async with httpx.AsyncClient(verify=context) as kept:
                while not done.is_set():
                    async with httpx.AsyncClient(verify=context) as fresh:
                        for client in (kept, fresh):
                            response = await client.get(f"https://localhost:{port}/")
                            failures += response.status_code != 200
                            count += 1
            return count

        loader = asyncio.create_task(load())
        await asyncio.sleep(0.2)
        install(secret, second)
        await wait_for(lambda: watcher.reloads == 1, "the rotation was not picked up")
        assert await served_serial(port, context) == format(second.cert.serial_number, "x")
        # A broken rotation (a key that is not the certificate's) is refused; the last good
        # pair keeps serving.
        (secret / "tls.key").write_bytes(ca.issue().key_pem)
        await wait_for(lambda: watcher.refusals >= 1, "the bad rotation was not noticed")
        assert await served_serial(port, context) == format(second.cert.serial_number, "x")
        await asyncio.sleep(0.2)
        done.set()
        served = await loader
        assert failures == 0 and served > 20
        listing = json.loads(await admin_get(proxy, "/certs"))
        (entry,) = listing["certificates"]
        assert entry["cert_chain"][0]["serial_number"] == format(second.cert.serial_number, "x")
