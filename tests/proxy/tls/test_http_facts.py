"""What the HTTP layer knows of a TLS connection: XFCC, the TLS access-log operators, SNI."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from remora.proxy.http import xfcc
from remora.proxy.tls.facts import TlsFacts
from remora.proxy.tls.peer import describe
from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    file_access_log,
    http_listener,
    read_log,
    running_proxy,
)
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority

CALLER = "spiffe://mesh.test/ns/default/sa/frontend"
SERVER = "spiffe://mesh.test/ns/default/sa/backend"
LOG_FORMAT = (
    "%DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_LOCAL_URI_SAN% %DOWNSTREAM_TLS_VERSION% "
    "%REQUESTED_SERVER_NAME% %DOWNSTREAM_PEER_SUBJECT% %DOWNSTREAM_PEER_FINGERPRINT_256%\n"
)


class Pki:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = Authority()
        self.ca_path = self.ca.write(tmp_path)
        self.server_issued = self.ca.issue(
            "backend", dns=("localhost", "api.mesh.test"), uris=(SERVER,)
        )
        self.server = self.server_issued.write(tmp_path, "server")
        self.client_issued = self.ca.issue("frontend", dns=(), ips=(), uris=(CALLER,))
        self.client = self.client_issued.write(tmp_path, "client")

    def context(self, with_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if with_cert:
            context.load_cert_chain(str(self.client[0]), str(self.client[1]))
        return context


def mtls_listener(pki: Pki, log: Path, **hcm: Any) -> dict[str, Any]:
    listener = http_listener(name="inbound", access_log=file_access_log(log, LOG_FORMAT), **hcm)
    return tlsconfig.with_tls(
        listener,
        tlsconfig.downstream(cert=pki.server[0], key=pki.server[1], ca=pki.ca_path),
    )


async def exchange(
    port: int, context: ssl.SSLContext | None, extra: str = "", server_name: str = "localhost"
) -> dict[str, Any]:
    if context is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=server_name
        )
    writer.write(f"GET /h HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    echoed: dict[str, Any] = json.loads(body)
    return echoed["headers"]


async def test_sanitize_set_puts_this_hops_element_and_logs_the_peer(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    log = tmp_path / "access.log"
    listener = mtls_listener(
        pki,
        log,
        forward_client_cert_details="SANITIZE_SET",
        set_current_client_cert_details={"subject": True, "uri": True, "dns": True},
    )
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("inbound")
        forged = "x-forwarded-client-cert: By=evil;Hash=00\r\n"
        headers = await exchange(port, pki.context(), forged, server_name="api.mesh.test")
        peer = describe(pki.client_issued.cert)
        assert headers["x-forwarded-client-cert"] == (
            f'By={SERVER};Hash={peer.sha256};Subject="CN=frontend";URI={CALLER}'
        )
        # Without a client certificate there is no element, and a client's header is dropped.
        headers = await exchange(port, pki.context(with_cert=False), forged)
        assert "x-forwarded-client-cert" not in headers
        lines = await read_log(log, 2)
    assert lines[0] == (f"{CALLER} {SERVER} TLSv1.3 api.mesh.test CN=frontend {peer.sha256}")
    assert lines[1] == f"- {SERVER} TLSv1.3 localhost - -"


async def test_append_forward_and_the_default_sanitize(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    earlier = "x-forwarded-client-cert: By=spiffe://edge;Hash=ab\r\n"
    listener = mtls_listener(pki, tmp_path / "a.log", forward_client_cert_details="APPEND_FORWARD")
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        headers = await exchange(proxy.listener_port("inbound"), pki.context(), earlier)
        peer = describe(pki.client_issued.cert)
        assert headers["x-forwarded-client-cert"] == (
            f"By=spiffe://edge;Hash=ab,By={SERVER};Hash={peer.sha256}"
        )
    plain = http_listener(name="plain")
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([plain], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        headers = await exchange(proxy.listener_port("plain"), None, earlier)
        assert "x-forwarded-client-cert" not in headers  # Envoy's default: SANITIZE
    always = http_listener(name="plain", forward_client_cert_details="ALWAYS_FORWARD_ONLY")
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([always], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        headers = await exchange(proxy.listener_port("plain"), None, earlier)
        assert headers["x-forwarded-client-cert"] == "By=spiffe://edge;Hash=ab"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("spiffe://a/b", "spiffe://a/b"), ('CN=x,O="y"', '"CN=x,O=\\"y\\""')],
)
def test_xfcc_values_are_quoted_when_they_hold_separators(text: str, quoted: str) -> None:
    ca = Authority()
    leaf = describe(ca.issue(dns=(), ips=(), uris=(text,) if "://" in text else ()).cert)
    facts = TlsFacts("TLSv1.3", None, None, None, b"x", None)
    facts._peer = leaf
    element = xfcc.element(facts, frozenset({"uri"}))
    assert element is not None
    if "://" in text:
        assert element.endswith(f";URI={quoted}")
    assert xfcc._value(text) == quoted
