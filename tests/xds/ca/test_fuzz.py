"""The CA's input surfaces under random and mutated input, bounded and derandomized for
`make test` (REMORA_FUZZ_EXAMPLES raises the count).

Invariants: the request reader and the signing API never raise anything but the errors written
for the case; every answer is a status the endpoint documents; a garbage CSR, JSON or token
never issues a certificate; and the real HTTPS endpoint, after a burst of hostile connections,
still issues an SVID to a good request.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remora.xds.ca import http1
from remora.xds.ca.api import SigningApi
from remora.xds.ca.authority import CertificateAuthority
from remora.xds.ca.grants import Grant, Grants, new_token
from remora.xds.ca.server import CaServer
from tests.xds.ca.helpers import csr_pem, ec_key

EXAMPLES = int(os.environ.get("REMORA_FUZZ_EXAMPLES", "300"))
_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize="REMORA_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_DOCUMENTED = {200, 400, 401, 404, 405, 408, 413, 431, 501}
_GOOD_HEAD = (
    b"POST /v1/svid HTTP/1.1\r\nhost: ca\r\nauthorization: Bearer t\r\n"
    b"content-type: application/json\r\ncontent-length: 12\r\n\r\n"
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out)


@_SETTINGS
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8).map(
            lambda edits: _mutate(_GOOD_HEAD, edits)
        ),
    )
)
def test_request_heads_parse_or_are_refused_with_a_documented_status(head: bytes) -> None:
    try:
        _method, _target, headers = http1.parse_head(head)
        http1.body_length(headers, 64 * 1024)
    except http1.HttpError as exc:
        assert exc.status in _DOCUMENTED, exc.status


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningApi, str]:
    authority = CertificateAuthority.open(
        tmp_path_factory.mktemp("fuzz") / "ca", "example.org", svid_ttl=600
    )
    token, digest = new_token()
    grants = Grants([Grant("default", "web", (digest,))])
    return SigningApi(authority, lambda: grants, "example.org"), token


_GOOD_CSR = csr_pem(ec_key()).decode()


@_SETTINGS
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "HEAD", "X"]),
    path=st.sampled_from(["/v1/svid", "/v1/bundle", "/", "/v1/svid?x=1", "/v1/svid/.."]),
    token=st.one_of(st.none(), st.text(max_size=40), st.just("GOOD")),
    body=st.one_of(
        st.binary(max_size=200),
        st.builds(lambda v: json.dumps(v).encode(), st.dictionaries(st.text(max_size=8),
                  st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=3)),
        st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=6).map(
            lambda edits: json.dumps({"csr": _mutate(_GOOD_CSR.encode(), edits).decode(
                "latin-1")}).encode()
        ),
    ),
)  # fmt: skip
def test_the_signing_api_never_issues_to_bad_input(
    api: tuple[SigningApi, str], method: str, path: str, token: str | None, body: bytes
) -> None:
    signing, good = api
    headers = {}
    if token is not None:
        headers["authorization"] = f"Bearer {good if token == 'GOOD' else token}"
    status, answer = signing.handle(method, path, headers, body)
    assert status in _DOCUMENTED, (status, answer)
    if status == 200 and "certificate_chain" in answer:
        # Issued: only to the granted token, for a CSR that parsed and verified.
        assert token == "GOOD" and method == "POST"
        assert answer["spiffe_id"] == "spiffe://example.org/ns/default/sa/web"


async def test_the_endpoint_serves_after_a_burst_of_hostile_connections(tmp_path: Path) -> None:
    authority = CertificateAuthority.open(tmp_path / "ca", "example.org", svid_ttl=600)
    token, digest = new_token()
    grants = Grants([Grant("default", "web", (digest,))])
    server = CaServer(SigningApi(authority, lambda: grants, "example.org"), ["127.0.0.1"])
    port = await server.start("127.0.0.1", 0)
    context = ssl.create_default_context(cadata=authority.bundle_pem().decode())
    hostile = [
        b"",  # connect and close
        b"\x16\x03\x01\x02\x00" + os.urandom(600),  # a ClientHello that is not one
        os.urandom(2048),
    ]
    try:
        for payload in hostile * 5:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            writer.close()
        for head in (b"GET / HTTP/1.1\r\n" + b"x: y\r\n" * 3000, b"POST /v1/svid HTTP/1.1\r\n"
                     b"content-length: 99999999\r\n\r\n", b"\xff\xfe\r\n\r\n"):  # fmt: skip
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
            )
            writer.write(head)
            answer = await asyncio.wait_for(reader.read(4096), 10)
            assert answer.startswith(b"HTTP/1.1 4"), answer[:60]
            writer.close()
        body = json.dumps({"csr": csr_pem(ec_key()).decode()}).encode()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
        writer.write(
            b"POST /v1/svid HTTP/1.1\r\nhost: ca\r\nauthorization: Bearer " + token.encode()
            + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        answer = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b"certificate_chain" in answer
    finally:
        await server.close()
