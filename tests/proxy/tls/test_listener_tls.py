"""TLS on listeners end to end: real handshakes from httpx, curl, openssl and Python's ssl."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from remora.proxy.server import ProxyServer
from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    http_listener,
    running_proxy,
    tcp_listener,
)
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority

SPIFFE_FRONTEND = "spiffe://mesh.test/ns/default/sa/frontend"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = Authority()
    server = ca.issue("server")
    client = ca.issue("frontend", dns=(), ips=(), uris=(SPIFFE_FRONTEND,))
    other = ca.issue("other", dns=(), ips=(), uris=("spiffe://mesh.test/ns/default/sa/other",))
    stranger = Authority("someone else's CA").issue("frontend", uris=(SPIFFE_FRONTEND,))
    paths: dict[str, Any] = {"ca": ca.write(tmp_path), "dir": tmp_path}
    for name, issued in [
        ("server", server),
        ("client", client),
        ("other", other),
        ("stranger", stranger),
    ]:
        paths[name] = issued.write(tmp_path, name)
    return paths


def client_context(pki: dict[str, Any], cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert is not None:
        cert_path, key_path = pki[cert]
        context.load_cert_chain(str(cert_path), str(key_path))
    return context


def tls_http_listener(socket: dict[str, Any], **hcm: Any) -> dict[str, Any]:
    listener = http_listener(name="front", **hcm)
    listener["stat_prefix"] = "front"
    return tlsconfig.with_tls(listener, socket)


def ssl_stat(proxy: ProxyServer, name: str, where: str = "listener.front") -> int:
    return proxy.store.counter(f"{where}.ssl.{name}").value


async def handshake(
    port: int, context: ssl.SSLContext, request: bytes = b""
) -> tuple[bytes | None, str | None]:
    """(what the server sent back, or None if the handshake failed; the error if any)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost"),
            5,
        )
    except (ssl.SSLError, ConnectionError) as exc:
        return None, str(exc)
    try:
        writer.write(request or b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        return data, None
    except (ssl.SSLError, ConnectionError) as exc:
        return b"", str(exc)
    finally:
        writer.close()


async def test_https_listener_terminates_tls_and_says_https_upstream(
    pki: dict[str, Any],
) -> None:
    cert, key = pki["server"]
    socket = tlsconfig.downstream(cert=cert, key=key)
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap([tls_http_listener(socket)], [cluster("backend", [ups[0].port])])
        ) as proxy,
    ):
        port = proxy.listener_port("front")
        async with httpx.AsyncClient(verify=client_context(pki)) as client:
            for _ in range(3):
                response = await client.get(f"https://localhost:{port}/hello")
                assert response.status_code == 200
        echoed = response.json()
        assert echoed["headers"]["x-forwarded-proto"] == "https"
        assert ssl_stat(proxy, "handshake") == 1  # one kept-alive connection
        assert ssl_stat(proxy, "versions.TLSv1.3") == 1
        assert ssl_stat(proxy, "no_certificate") == 1
        assert ssl_stat(proxy, "connection_error") == 0
        assert proxy.store.counter("http.front.downstream_cx_ssl_total").value == 1
        # A plaintext request to the same port is a failed handshake, not a request.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert b"HTTP/1.1" not in await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert ssl_stat(proxy, "connection_error") == 1
        # ...and the listener goes on serving.
        async with httpx.AsyncClient(verify=client_context(pki)) as client:
            assert (await client.get(f"https://localhost:{port}/")).status_code == 200
        for _ in range(100):  # the client's close reaches the proxy a moment later
            if proxy.store.gauge("http.front.downstream_cx_ssl_active").value == 0:
                break
            await asyncio.sleep(0.02)
        assert proxy.store.gauge("http.front.downstream_cx_ssl_active").value == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_and_openssl_talk_to_a_tls_listener(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    socket = tlsconfig.downstream(cert=cert, key=key, alpn_protocols=["http/1.1"])
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap([tls_http_listener(socket)], [cluster("backend", [ups[0].port])])
        ) as proxy,
    ):
        port = proxy.listener_port("front")
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--cacert", str(pki["ca"]),
            "-w", "\n%{http_version} %{ssl_verify_result}",
            f"https://localhost:{port}/via-curl",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(curl.communicate(), 10)
        assert curl.returncode == 0, err
        body, _, tail = out.decode().rpartition("\n")
        assert json.loads(body)["path"] == "/via-curl"
        assert tail == "1.1 0"
        if shutil.which("openssl") is None:
            return
        s_client = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki["ca"]),
            "-alpn", "http/1.1", "-tls1_2", "-verify_return_error", "-ign_eof",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(
            s_client.communicate(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), 10
        )
        text = out.decode(errors="replace")
        assert "ALPN protocol: http/1.1" in text
        assert "Protocol  : TLSv1.2" in text or "TLSv1.2" in text
        assert "HTTP/1.1 200" in text
        assert ssl_stat(proxy, "versions.TLSv1.2") == 1


async def test_mtls_listener_refuses_each_bad_client_with_its_stat(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    socket = tlsconfig.downstream(
        require_client_certificate=True,
        cert=cert,
        key=key,
        ca=pki["ca"],
        sans=[tlsconfig.uri_san(SPIFFE_FRONTEND)],
    )
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap([tls_http_listener(socket)], [cluster("backend", [ups[0].port])])
        ) as proxy,
    ):
        port = proxy.listener_port("front")
        data, error = await handshake(port, client_context(pki))
        assert not data and error  # no client certificate
        assert ssl_stat(proxy, "fail_verify_no_cert") == 1
        data, error = await handshake(port, client_context(pki, "stranger"))
        assert not data and error  # a certificate from an untrusted CA
        assert ssl_stat(proxy, "fail_verify_error") == 1
        data, error = await handshake(port, client_context(pki, "other"))
        assert not data  # trusted, but not the SPIFFE ID the listener admits
        assert ssl_stat(proxy, "fail_verify_san") == 1
        assert ssl_stat(proxy, "connection_error") == 3
        assert ssl_stat(proxy, "handshake") == 0
        assert proxy.store.counter("http.front.downstream_rq_total").value == 0
        data, error = await handshake(port, client_context(pki, "client"))
        assert error is None and data is not None and data.startswith(b"HTTP/1.1 200"), error
        assert ssl_stat(proxy, "handshake") == 1


async def test_tcp_proxy_terminates_tls(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    listener = tlsconfig.with_tls(tcp_listener("backend"), tlsconfig.downstream(cert=cert, key=key))
    listener["stat_prefix"] = "front"
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        data, error = await handshake(proxy.listener_port("tcp"), client_context(pki))
        assert error is None and data is not None
        assert data.startswith(b"HTTP/1.1 200") and b"x-upstream-name: up-0" in data
        assert ssl_stat(proxy, "handshake") == 1


async def test_handshake_timeout_closes_a_silent_client(pki: dict[str, Any]) -> None:
    cert, key = pki["server"]
    listener = tls_http_listener(tlsconfig.downstream(cert=cert, key=key))
    listener["filter_chains"][0]["transport_socket_connect_timeout"] = "0.2s"
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("front"))
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
        assert ssl_stat(proxy, "connection_error") == 1
