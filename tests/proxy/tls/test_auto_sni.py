"""`upstream_http_protocol_options`: `auto_sni` sends each request's host as the SNI (one pool
per name, so a connection made for one host never carries another's requests), and
`auto_san_validation` requires the upstream certificate to carry that name."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from tests.proxy.harness import (
    admin_get,
    bootstrap,
    cluster,
    http_listener,
    routes_to,
    running_proxy,
)
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority

_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


class SniUpstream:
    """A TLS upstream that answers each request with the SNI of its connection."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = Authority()
        self.ca_path = self.ca.write(tmp_path)
        cert, key = self.ca.issue("upstream", dns=("a.test", "b.test"), ips=()).write(
            tmp_path, "upstream"
        )
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.connections: list[str | None] = []
        self.context.sni_callback = self._sni
        self._names: dict[int, str | None] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    def _sni(self, sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self._names[id(sock)] = name

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        name = self._names.pop(id(ssl_object), None)
        self.connections.append(name)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                body = (name or "-").encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> SniUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def _config(upstream: SniUpstream, **options: Any) -> dict[str, Any]:
    socket = tlsconfig.upstream(ca=upstream.ca_path)
    up = cluster("up", [upstream.port], transport_socket=socket)
    up["typed_extension_protocol_options"] = {
        _OPTIONS: {
            "@type": f"type.googleapis.com/{_OPTIONS}",
            "explicit_http_config": {"http_protocol_options": {}},
            "upstream_http_protocol_options": options,
        }
    }
    return bootstrap([http_listener(routes_to("up"), name="front")], [up])


@asynccontextmanager
async def _front(config: dict[str, Any]) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with running_proxy(config) as proxy:
        port = proxy.listener_port("front")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client, proxy


async def test_each_host_gets_its_own_sni_and_pool(tmp_path: Path) -> None:
    async with SniUpstream(tmp_path) as upstream:
        config = _config(upstream, auto_sni=True, auto_san_validation=True)
        async with _front(config) as (client, proxy):
            for host in ("a.test", "b.test", "a.test:8080", "b.test", "a.test"):
                response = await client.get("/", headers={"host": host})
                assert response.status_code == 200, response.text
                assert response.text == host.partition(":")[0]
            # One upstream connection per name, each reused by the requests for that name.
            assert sorted(upstream.connections) == ["a.test", "b.test"]
            # A name the upstream's certificate does not carry is refused at the handshake.
            refused = await client.get("/", headers={"host": "c.test"})
            assert refused.status_code == 503
            assert "transport failure reason: TLS_error: peer certificate refused" in (refused.text)
            stats = await admin_get(proxy, "/stats")
            assert "cluster.up.ssl.fail_verify_san: 1" in stats


async def test_the_sni_can_come_from_a_header_and_without_validation_any_name_goes(
    tmp_path: Path,
) -> None:
    async with SniUpstream(tmp_path) as upstream:
        config = _config(upstream, auto_sni=True, override_auto_sni_header="X-Sni")
        async with _front(config) as (client, _proxy):
            answer = await client.get("/", headers={"host": "a.test", "x-sni": "b.test"})
            assert answer.text == "b.test"
            # No auto_san_validation: the chain is checked, the name is not.
            answer = await client.get("/", headers={"host": "c.test"})
            assert answer.status_code == 200 and answer.text == "c.test"


async def test_without_auto_sni_the_configured_sni_goes_on_one_pool(tmp_path: Path) -> None:
    async with SniUpstream(tmp_path) as upstream:
        config = _config(upstream)
        socket = config["static_resources"]["clusters"][0]["transport_socket"]
        socket["typed_config"]["sni"] = "a.test"
        async with _front(config) as (client, _proxy):
            for host in ("a.test", "b.test"):
                assert (await client.get("/", headers={"host": host})).text == "a.test"
            assert upstream.connections == ["a.test"]


def test_a_bad_override_header_is_named() -> None:
    up = cluster("up", [1])
    up["typed_extension_protocol_options"] = {
        _OPTIONS: {
            "@type": f"type.googleapis.com/{_OPTIONS}",
            "upstream_http_protocol_options": {"auto_sni": True,
                                               "override_auto_sni_header": "bad header"},
        }
    }  # fmt: skip
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(bootstrap([], [up])))
    assert any(
        "upstream_http_protocol_options.override_auto_sni_header: not a header name" in str(e)
        for e in info.value.errors
    ), info.value.errors


async def test_a_host_that_is_no_server_name_is_a_connect_failure(tmp_path: Path) -> None:
    async with SniUpstream(tmp_path) as upstream:
        config = _config(upstream, auto_sni=True, auto_san_validation=True)
        async with _front(config) as (client, _proxy):
            for host in ("a..test", "x" * 70 + ".test"):
                refused = await client.get("/", headers={"host": host})
                assert refused.status_code == 503, refused.text
                assert "cannot be sent as a server name (SNI)" in refused.text
            assert (await client.get("/", headers={"host": "a.test"})).text == "a.test"
