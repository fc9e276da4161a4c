"""Several filter chains on one listener: `filter_chain_match`, `tls_inspector`, the default
chain, and permissive mode (TLS and plaintext on one port), end to end."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.filter_chain_match import ChainMatch, ConnectionFacts, select_chain
from tests.proxy.harness import bootstrap, direct_routes, http_listener, running_proxy
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority

_INSPECTOR_TYPE = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typed_config": {"@type": f"type.googleapis.com/{_INSPECTOR_TYPE}"},
}


def chain(body: str, match: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A filter chain whose connection manager answers every request with `body`."""
    listener = http_listener(direct_routes(body), name=f"chain-{body}")
    found: dict[str, Any] = listener["filter_chains"][0]
    if match is not None:
        found["filter_chain_match"] = match
    found.update(extra)
    return found


def listener_with(*chains: dict[str, Any], inspector: bool = True, **extra: Any) -> dict[str, Any]:
    listener = http_listener(name="multi")
    listener["stat_prefix"] = "multi"
    listener["filter_chains"] = list(chains)
    if inspector:
        listener["listener_filters"] = [copy.deepcopy(INSPECTOR)]
    listener.update(extra)
    return listener


class Certs:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = Authority()
        self.ca_path = self.ca.write(tmp_path)
        self.a = self.ca.issue("a.test", dns=("a.test",)).write(tmp_path, "a")
        self.b = self.ca.issue("wild.b.test", dns=("*.b.test",)).write(tmp_path, "b")
        self.localhost = self.ca.issue("localhost").write(tmp_path, "localhost")

    def tls(self, pair: tuple[Path, Path], **common: Any) -> dict[str, Any]:
        return tlsconfig.downstream(cert=pair[0], key=pair[1], **common)

    def client(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


async def tls_get(port: int, context: ssl.SSLContext, server_name: str) -> tuple[str | None, bytes]:
    """(the subject CN the server presented, the response), or (None, b"") if refused."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_name),
            5,
        )
    except (ssl.SSLError, ConnectionError):
        return None, b""
    ssl_object = writer.get_extra_info("ssl_object")
    subject = dict(item[0] for item in ssl_object.getpeercert()["subject"])
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return subject["commonName"], data


async def test_permissive_mode_serves_tls_and_plaintext_on_one_port(tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    listener = listener_with(
        chain(
            "over-tls",
            {"transport_protocol": "tls"},
            transport_socket=certs.tls(certs.localhost),
        ),
        chain("plaintext", {"transport_protocol": "raw_buffer"}),
    )
    async with running_proxy(bootstrap([listener], [])) as proxy:
        port = proxy.listener_port("multi")
        async with httpx.AsyncClient(verify=certs.client()) as client:
            tls = await client.get(f"https://localhost:{port}/")
            plain = await client.get(f"http://127.0.0.1:{port}/")
        assert (tls.status_code, tls.text) == (200, "over-tls")
        assert (plain.status_code, plain.text) == (200, "plaintext")
        store = proxy.store
        assert store.counter("tls_inspector.tls_found").value == 1
        assert store.counter("tls_inspector.tls_not_found").value == 1
        assert store.counter("tls_inspector.sni_found").value == 1
        assert store.counter("listener.multi.ssl.handshake").value == 1


async def test_server_names_pick_the_certificate_and_the_default_chain_takes_the_rest(
    tmp_path: Path,
) -> None:
    certs = Certs(tmp_path)
    listener = listener_with(
        chain("a", {"server_names": ["a.test"]}, transport_socket=certs.tls(certs.a)),
        chain("b", {"server_names": ["*.b.test"]}, transport_socket=certs.tls(certs.b)),
        default_filter_chain=chain("default", transport_socket=certs.tls(certs.localhost)),
    )
    async with running_proxy(bootstrap([listener], [])) as proxy:
        port = proxy.listener_port("multi")
        context = certs.client()
        subject, data = await tls_get(port, context, "a.test")
        assert subject == "a.test" and data.endswith(b"\r\n\r\na")
        subject, data = await tls_get(port, context, "api.b.test")
        assert subject == "wild.b.test" and data.endswith(b"\r\n\r\nb")
        subject, data = await tls_get(port, context, "localhost")
        assert subject == "localhost" and data.endswith(b"\r\n\r\ndefault")
        assert proxy.store.counter("listener.multi.ssl.handshake").value == 3


async def test_no_matching_chain_closes_and_counts(tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    listener = listener_with(
        chain("a", {"server_names": ["a.test"]}, transport_socket=certs.tls(certs.a))
    )
    async with running_proxy(bootstrap([listener], [])) as proxy:
        port = proxy.listener_port("multi")
        subject, _ = await tls_get(port, certs.client(), "other.test")
        assert subject is None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert proxy.store.counter("listener.multi.no_filter_chain_match").value == 2


async def test_alpn_picks_a_chain(tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    listener = listener_with(
        chain(
            "h2-offered",
            {"application_protocols": ["h2"]},
            transport_socket=certs.tls(certs.localhost, alpn_protocols=["http/1.1"]),
        ),
        chain("other", transport_socket=certs.tls(certs.localhost)),
    )
    async with running_proxy(bootstrap([listener], [])) as proxy:
        port = proxy.listener_port("multi")
        _, data = await tls_get(port, certs.client(["h2", "http/1.1"]), "localhost")
        assert data.endswith(b"h2-offered")
        _, data = await tls_get(port, certs.client(["http/1.1"]), "localhost")
        assert data.endswith(b"other")
        assert proxy.store.counter("tls_inspector.alpn_found").value == 2


async def test_listener_filters_timeout(tmp_path: Path) -> None:
    listener = listener_with(
        chain("plaintext", {"transport_protocol": "raw_buffer"}),
        listener_filters_timeout="0.2s",
    )
    async with running_proxy(bootstrap([listener], [])) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("multi"))
        assert await asyncio.wait_for(reader.read(), 3) == b""  # silent: closed at 0.2 s
        writer.close()
    # Envoy's continue_on_listener_filters_timeout: a client that speaks second (SMTP-like)
    # is given to the chains without inspection.
    listener["continue_on_listener_filters_timeout"] = True
    async with running_proxy(bootstrap([listener], [])) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener_port("multi"))
        await asyncio.sleep(0.4)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 3)).endswith(b"plaintext")
        writer.close()


def errors_of(listener: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(bootstrap([listener], [])))
    return [str(error) for error in info.value.errors]


def test_chain_config_errors_name_their_field() -> None:
    path = "static_resources.listeners[0]"
    found = errors_of(listener_with(chain("x", {"server_names": ["a.test"]}), inspector=False))
    assert len(found) == 1
    assert found[0].startswith(f"{path}.filter_chains[0].filter_chain_match: server_names")
    assert "add the envoy.filters.listener.tls_inspector listener filter" in found[0]
    found = errors_of(
        listener_with(chain("x", {"destination_port": 80}), chain("y", {"destination_port": 80}))
    )
    assert found == [
        f"{path}.filter_chains[1].filter_chain_match: the same matching rules as "
        "filter_chains[0]: multiple filter chains with the same matching rules are not allowed"
    ]
    # Overlapping lists tie for a connection too, and so do the same names in another order.
    found = errors_of(
        listener_with(
            chain("x", {"server_names": ["a.test", "b.test"]}),
            chain("y", {"server_names": ["a.test"]}),
            chain("z", {"server_names": ["c.test", "d.test"]}),
            chain("w", {"server_names": ["d.test", "c.test"]}),
        )
    )
    assert [line.split(": ")[0] for line in found] == [
        f"{path}.filter_chains[1].filter_chain_match",
        f"{path}.filter_chains[3].filter_chain_match",
    ]
    assert "(for a.test)" in found[0]
    found = errors_of(listener_with(chain("x", {"server_names": ["a.*.test"]})))
    assert found[0].startswith(f"{path}.filter_chains[0].filter_chain_match.server_names[0]: ")
    found = errors_of(listener_with(chain("x", {"transport_protocol": "quic"})))
    assert found[0].startswith(f"{path}.filter_chains[0].filter_chain_match.transport_protocol")
    found = errors_of(
        listener_with(chain("x", {"prefix_ranges": [{"address_prefix": "nope", "prefix_len": 8}]}))
    )
    assert found[0].startswith(f"{path}.filter_chains[0].filter_chain_match.prefix_ranges[0]: ")


def test_selection_follows_envoys_order_without_backtracking() -> None:
    def facts(**kw: Any) -> ConnectionFacts:
        base: dict[str, Any] = {
            "destination_ip": "10.0.0.1",
            "destination_port": 443,
            "source_ip": "192.168.1.7",
            "source_port": 40000,
        }
        return ConnectionFacts(**{**base, **kw})

    net = ipaddress.ip_network
    chains = [
        ChainMatch(destination_port=443, server_names=("a.test",), application_protocols=("h2",)),
        ChainMatch(destination_port=443),
        ChainMatch(prefix_ranges=(net("10.0.0.0/8"),)),
        ChainMatch(prefix_ranges=(net("10.0.0.0/24"),)),
        ChainMatch(source_prefix_ranges=(net("192.168.0.0/16"),), destination_port=8443),
        ChainMatch(destination_port=8443),
    ]
    # The port narrows to chains 0 and 1; SNI picks 0; its ALPN fails: no backtracking to 1.
    assert select_chain(chains, facts(server_name="a.test", application_protocols=("h2",))) == 0
    assert select_chain(chains, facts(server_name="a.test", application_protocols=("x",))) is None
    assert select_chain(chains, facts(server_name="b.test")) == 1
    # No chain names port 80: those without a port stay, and the longest prefix wins.
    assert select_chain(chains, facts(destination_port=80)) == 3
    assert select_chain(chains, facts(destination_port=80, destination_ip="10.9.0.1")) == 2
    assert select_chain(chains, facts(destination_port=8443)) == 4
    assert select_chain(chains, facts(destination_port=8443, source_ip="172.16.0.1")) == 5
