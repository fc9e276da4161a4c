"""Secrets by name: the bootstrap's `static_resources.secrets`, and file-based SDS whose file
can be rewritten under a running proxy."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from tests.proxy.harness import bootstrap, direct_routes, http_listener, running_proxy
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority, Issued

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def sds_socket(name: str, sds_config: dict[str, Any] | None = None) -> dict[str, Any]:
    socket = tlsconfig.downstream()
    ref: dict[str, Any] = {"name": name}
    if sds_config is not None:
        ref["sds_config"] = sds_config
    socket["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"] = [ref]
    return socket


def secret(name: str, issued: Issued) -> dict[str, Any]:
    return {
        "name": name,
        "tls_certificate": {
            "certificate_chain": {"inline_string": issued.cert_pem.decode()},
            "private_key": {"inline_string": issued.key_pem.decode()},
        },
    }


async def serial_of(port: int, context: ssl.SSLContext) -> int:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number


async def test_a_static_secret_serves(tmp_path: Path) -> None:
    ca = Authority()
    issued = ca.issue()
    listener = tlsconfig.with_tls(
        http_listener(direct_routes("ok"), name="front"), sds_socket("server")
    )
    config = bootstrap([listener], [])
    config["static_resources"]["secrets"] = [secret("server", issued)]
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
    async with running_proxy(config) as proxy:
        port = proxy.listener_port("front")
        assert await serial_of(port, context) == issued.cert.serial_number
        async with httpx.AsyncClient(verify=context) as client:
            assert (await client.get(f"https://localhost:{port}/")).text == "ok"


def test_unknown_and_empty_secrets_name_their_field() -> None:
    listener = tlsconfig.with_tls(http_listener(direct_routes("ok")), sds_socket("nope"))
    config = bootstrap([listener], [])
    config["static_resources"]["secrets"] = [{"name": "other", "validation_context": {}}]
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(config))
    found = [str(e) for e in info.value.errors]
    assert any(
        "tls_certificate_sds_secret_configs[0].name: no static secret named 'nope' "
        "(static_resources.secrets has: other)" in line
        for line in found
    ), found


async def test_file_sds_rotates_and_keeps_the_last_good_secret(tmp_path: Path) -> None:
    ca = Authority()
    first, second = ca.issue(), ca.issue()
    directory = tmp_path / "sds"
    directory.mkdir()
    path = directory / "server.json"

    def write(document: dict[str, Any]) -> None:
        temporary = directory / ".server.json.new"
        temporary.write_text(json.dumps(document))
        os.replace(temporary, path)

    write({"resources": [{"@type": SECRET_TYPE, **secret("server", first)}]})
    source = {
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(directory)}}
    }
    listener = tlsconfig.with_tls(
        http_listener(direct_routes("ok"), name="front"), sds_socket("server", source)
    )
    context = ssl.create_default_context(cafile=str(ca.write(tmp_path)))
    async with running_proxy(bootstrap([listener], [])) as proxy:
        port = proxy.listener_port("front")
        watcher = proxy.tls_watcher
        assert watcher is not None
        assert await serial_of(port, context) == first.cert.serial_number
        write({"resources": [{"@type": SECRET_TYPE, **secret("server", second)}]})
        deadline = time.monotonic() + 5
        while watcher.reloads < 1:
            assert time.monotonic() < deadline, "the rewritten secret was not applied"
            await asyncio.sleep(0.02)
        assert await serial_of(port, context) == second.cert.serial_number
        write({"resources": [{"@type": SECRET_TYPE, "name": "server", "tls_certificate": {}}]})
        deadline = time.monotonic() + 5
        while watcher.refusals < 1:
            assert time.monotonic() < deadline, "the bad secret was not noticed"
            await asyncio.sleep(0.02)
        assert await serial_of(port, context) == second.cert.serial_number


async def test_config_dump_shows_no_inline_private_key() -> None:
    issued = Authority().issue()
    listener = tlsconfig.with_tls(
        http_listener(direct_routes("ok"), name="front"), sds_socket("server")
    )
    config = bootstrap([listener], [])
    config["static_resources"]["secrets"] = [secret("server", issued)]
    async with running_proxy(config) as proxy:
        assert proxy.admin is not None
        async with httpx.AsyncClient() as client:
            dump = (await client.get(f"http://127.0.0.1:{proxy.admin.port}/config_dump")).text
    assert "PRIVATE KEY" not in dump
    assert "[redacted]" in dump and "BEGIN CERTIFICATE" in dump
