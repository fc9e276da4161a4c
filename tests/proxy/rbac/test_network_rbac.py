"""`envoy.filters.network.rbac`: connections refused by identity or address before the
connection manager or tcp_proxy sees a byte."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    direct_routes,
    http_listener,
    running_proxy,
    tcp_listener,
)
from tests.proxy.tls import bioclient, tlsconfig
from tests.proxy.tls.pki import Authority

CALLER = "spiffe://mesh.test/ns/default/sa/frontend"
NETWORK_RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"


def with_rbac(listener: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    chain = listener["filter_chains"][0]
    chain["filters"].insert(
        0,
        {
            "name": "envoy.filters.network.rbac",
            "typed_config": {"@type": NETWORK_RBAC, "stat_prefix": "gate", "rules": rules},
        },
    )
    return listener


async def talk(port: int, context: ssl.SSLContext | None) -> bytes:
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        )
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(REQUEST)
        return await asyncio.wait_for(reader.read(), 5)
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        writer.close()


async def test_tcp_proxy_admits_only_the_callers_identity(tmp_path: Path) -> None:
    ca = Authority()
    server = ca.issue("backend").write(tmp_path, "server")
    ca_path = ca.write(tmp_path)
    identities = {
        "caller": ca.issue("frontend", dns=(), ips=(), uris=(CALLER,)).write(tmp_path, "c"),
        "other": ca.issue("other", dns=(), ips=(), uris=("spiffe://mesh.test/x",)).write(
            tmp_path, "o"
        ),
    }
    rules = {
        "action": "ALLOW",
        "policies": {
            "caller": {
                "permissions": [{"any": True}],
                "principals": [{"authenticated": {"principal_name": {"exact": CALLER}}}],
            }
        },
    }
    listener = tlsconfig.with_tls(
        with_rbac(tcp_listener("backend"), rules),
        tlsconfig.downstream(cert=server[0], key=server[1], ca=ca_path),
    )
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("tcp")
        answers = {}
        for name, (cert, key) in identities.items():
            context = ssl.create_default_context(cafile=str(ca_path))
            context.load_cert_chain(str(cert), str(key))
            answers[name] = await talk(port, context)
        assert answers["caller"].startswith(b"HTTP/1.1 200")
        assert b"HTTP" not in answers["other"]
        store = proxy.store
        assert store.counter("gate.rbac.allowed").value == 1
        assert store.counter("gate.rbac.denied").value == 1
        assert store.counter("tcp.tcp.downstream_cx_total").value == 1  # the refused never got in


async def test_a_plaintext_listener_refuses_by_address() -> None:
    rules = {
        "action": "DENY",
        "policies": {
            "loopback": {
                "permissions": [{"any": True}],
                "principals": [
                    {"direct_remote_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}}
                ],
            }
        },
    }
    listener = with_rbac(http_listener(direct_routes("hello")), rules)
    async with running_proxy(bootstrap([listener], [])) as proxy:
        assert await talk(proxy.listener_port("http"), None) == b""
        assert proxy.store.counter("gate.rbac.denied").value == 1
        assert proxy.store.counter("http.http.downstream_rq_total").value == 0


async def test_an_admitting_gate_passes_on_the_bytes_the_inspector_read() -> None:
    allow_all = {
        "action": "ALLOW",
        "policies": {"all": {"permissions": [{"any": True}], "principals": [{"any": True}]}},
    }
    listener = with_rbac(http_listener(direct_routes("hello")), allow_all)
    listener["filter_chains"][0]["filter_chain_match"] = {"transport_protocol": "raw_buffer"}
    inspector = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
    listener["listener_filters"] = [
        {
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": f"type.googleapis.com/{inspector}"},
        }
    ]
    async with running_proxy(bootstrap([listener], [])) as proxy:
        answer = await talk(proxy.listener_port("http"), None)
        assert answer.endswith(b"hello"), answer
        assert proxy.store.counter("gate.rbac.allowed").value == 1


async def test_tls_close_notify_then_fin_ends_the_stream_once(tmp_path: Path) -> None:
    """A client sends its request, close_notify, then FIN: tcp_proxy must still relay the
    upstream's answer (the end of the client's stream is one half-close, not two)."""
    ca = Authority()
    server = ca.issue("backend").write(tmp_path, "server")
    listener = tlsconfig.with_tls(
        tcp_listener("backend"), tlsconfig.downstream(cert=server[0], key=server[1])
    )
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([listener], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("tcp"))
        client, incoming, outgoing = await bioclient.handshake(context, reader, writer)
        client.write(REQUEST)
        with contextlib.suppress(ssl.SSLWantReadError):
            client.unwrap()
        writer.write(outgoing.read())
        writer.write_eof()
        received = b""
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                break
            incoming.write(data)
            try:
                while True:
                    received += client.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
        writer.close()
        assert received.startswith(b"HTTP/1.1 200"), received[:80]
