"""The admin server over real loopback sockets: httpx, curl, and raw bytes for the edge cases."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator

import h11
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from remora.proxy.admin.server import MAX_BODY_BYTES, AdminServer

from .support import StaticContext, populate

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server(context: StaticContext) -> AsyncIterator[AdminServer]:
    admin = AdminServer(context, "127.0.0.1", 0, idle_timeout=5.0)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def _url(server: AdminServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def _pipelined(port: int, requests: list[tuple[str, str, bytes]]) -> list[tuple[int, bytes]]:
    """Write all requests at once on one connection; frame each reply with h11 (no hand parsing).

    h11's client refuses to pipeline, so each request gets its own client-side state machine and
    the bytes left over after one response are handed to the next.
    """
    clients: list[h11.Connection] = []
    payload = b""
    for method, target, body in requests:
        client = h11.Connection(h11.CLIENT)
        headers = [("host", "admin")]
        if body:
            headers.append(("content-length", str(len(body))))
        payload += client.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            payload += client.send(h11.Data(data=body))
        payload += client.send(h11.EndOfMessage())
        clients.append(client)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    answers: list[tuple[int, bytes]] = []
    pending = b""
    try:
        for client in clients:
            if pending:  # an empty receive_data() would tell h11 the peer closed
                client.receive_data(pending)
            status, body = 0, b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await asyncio.wait_for(reader.read(65536), 5))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    pending = client.trailing_data[0]
                    answers.append((status, body))
                    break
                else:
                    raise AssertionError(f"unexpected event {event!r}")
    finally:
        writer.close()
    return answers


async def test_endpoints_over_http(server: AdminServer, context: StaticContext) -> None:
    populate(context.stats)
    async with httpx.AsyncClient() as client:
        ready = await client.get(_url(server, "/ready"))
        assert (ready.status_code, ready.text) == (200, "LIVE\n")
        info = await client.get(_url(server, "/server_info"))
        assert info.json()["version"] == "remora/test"
        assert info.headers["content-type"] == "application/json"
        stats = await client.get(_url(server, "/stats"), params={"filter": "upstream_rq_total"})
        assert stats.text == "cluster.demo.upstream_rq_total: 40\n"
        as_json = await client.get(_url(server, "/stats?format=json"))
        assert {"name": "cluster.demo.upstream_cx_active", "value": 2} in as_json.json()["stats"]
        clusters = await client.get(_url(server, "/clusters"))
        assert "demo::127.0.0.1:8080::cx_active::2\n" in clusters.text
        listeners = await client.get(_url(server, "/listeners?format=json"))
        assert listeners.json()["listener_statuses"][1]["name"] == "v6"
        dump = await client.get(_url(server, "/config_dump"))
        assert json.loads(dump.text)["configs"]
        index = await client.get(_url(server, "/"))
        assert index.text.startswith("admin commands are:")
        missing = await client.get(_url(server, "/missing"))
        assert missing.status_code == 404
        assert missing.headers["x-content-type-options"] == "nosniff"


async def test_prometheus_output_parses_with_envoy_names(
    server: AdminServer, context: StaticContext
) -> None:
    populate(context.stats)
    async with httpx.AsyncClient() as client:
        response = await client.get(_url(server, "/stats/prometheus"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert all(name.startswith("envoy_") for name in families)

    def sample_values(name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples}

    assert families["envoy_cluster_upstream_rq_xx"].type == "counter"
    assert sample_values("envoy_cluster_upstream_rq_xx") == {
        (("envoy_cluster_name", "demo"), ("envoy_response_code_class", "2")): 37,
        (("envoy_cluster_name", "demo"), ("envoy_response_code_class", "5")): 3,
    }
    assert sample_values("envoy_http_downstream_rq_xx") == {
        (("envoy_http_conn_manager_prefix", "ingress_http"), ("envoy_response_code_class", "2")): 40
    }
    assert sample_values("envoy_listener_downstream_cx") == {
        (("envoy_listener_address", "127.0.0.1_10000"),): 6
    }
    assert sample_values("envoy_tcp_downstream_cx_tx_bytes") == {
        (("envoy_tcp_prefix", "egress"),): 2048
    }
    assert families["envoy_cluster_upstream_cx_active"].type == "gauge"
    hist = families["envoy_cluster_upstream_rq_time"]
    assert hist.type == "histogram"
    by_name: dict[str, float] = {}
    for sample in hist.samples:
        key = sample.name + sample.labels.get("le", "")
        by_name[key] = sample.value
    assert by_name["envoy_cluster_upstream_rq_time_bucket1"] == 1
    assert by_name["envoy_cluster_upstream_rq_time_bucket+Inf"] == 5
    assert by_name["envoy_cluster_upstream_rq_time_count"] == 5
    assert by_name["envoy_cluster_upstream_rq_time_sum"] == pytest.approx(956.2)

    async with httpx.AsyncClient() as client:
        used = await client.get(_url(server, "/stats/prometheus?usedonly"))
    assert "envoy_cluster_upstream_cx_destroy" not in used.text
    assert "envoy_cluster_upstream_cx_destroy" in response.text


async def test_mutations(server: AdminServer, context: StaticContext) -> None:
    async with httpx.AsyncClient() as client:
        refused = await client.get(_url(server, "/healthcheck/fail"))
        assert refused.status_code == 405
        assert refused.text == "Method GET not allowed, POST required.\n"
        assert not context.healthcheck_failed
        failed = await client.post(_url(server, "/healthcheck/fail"))
        assert (failed.status_code, failed.text) == (200, "OK\n")
        not_ready = await client.get(_url(server, "/ready"))
        assert (not_ready.status_code, not_ready.text) == (503, "DRAINING\n")
        await client.post(_url(server, "/healthcheck/ok"))
        assert (await client.get(_url(server, "/ready"))).status_code == 200


async def test_quitquitquit_answers_then_requests_shutdown(
    server: AdminServer, context: StaticContext
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(_url(server, "/quitquitquit"))
    assert (response.status_code, response.text) == (200, "OK\n")
    for _ in range(100):
        if context.shutdown_requests:
            break
        await asyncio.sleep(0.01)
    assert context.shutdown_requests == 1


async def test_keep_alive_and_pipelining_on_one_connection(server: AdminServer) -> None:
    requests = [
        ("GET", "/ready", b""),
        ("POST", "/healthcheck/fail", b"body"),
        ("GET", "/ready", b""),
    ]
    answers = await _pipelined(server.port, requests)
    assert answers == [(200, b"LIVE\n"), (200, b"OK\n"), (503, b"DRAINING\n")]


async def test_httpx_reuses_the_connection(server: AdminServer) -> None:
    peers: set[int] = set()

    async def note_peer(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        peers.add(stream.get_extra_info("client_addr")[1])

    async with httpx.AsyncClient(event_hooks={"response": [note_peer]}) as client:
        for _ in range(5):
            assert (await client.get(_url(server, "/ready"))).status_code == 200
    assert len(peers) == 1


async def test_malformed_request_gets_400_and_close(server: AdminServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /ready HTTP/1.1\r\nHost a-header-without-colon\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)  # read() to EOF proves the server closed
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in data.lower()


async def test_garbage_gets_400_and_close(server: AdminServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_oversized_body_is_413(server: AdminServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            _url(server, "/healthcheck/ok"), content=b"x" * (MAX_BODY_BYTES + 1)
        )
    assert response.status_code == 413


async def test_head_has_length_but_no_body(server: AdminServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.head(_url(server, "/ready"))
    assert response.status_code == 200
    assert response.headers["content-length"] == "5"
    assert response.content == b""


async def test_close_drops_idle_keepalive_connections(context: StaticContext) -> None:
    admin = AdminServer(context, "127.0.0.1", 0)
    await admin.start()
    port = admin.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ready HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"LIVE\n"), 5)
    assert first.startswith(b"HTTP/1.1 200")
    await admin.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # server side closed the connection
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(RuntimeError):
        _ = admin.port


async def test_idle_connections_time_out(context: StaticContext) -> None:
    admin = AdminServer(context, "127.0.0.1", 0, idle_timeout=0.2)
    await admin.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await admin.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_curl(server: AdminServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-w", "\n%{http_code}", "-X", "POST", _url(server, "/healthcheck/fail"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert out == b"OK\n\n200"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_curl_expect_100_continue_is_answered(server: AdminServer) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-H", "Expect: 100-continue", "--data-binary", "x" * 4096,
        _url(server, "/healthcheck/ok"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert out == b"OK\n"
    # Without the interim 100 curl waits its 1 s expect timeout before sending the body.
    assert loop.time() - started < 0.9


async def test_failing_shutdown_hook_does_not_break_the_server(
    server: AdminServer, context: StaticContext
) -> None:
    def explode() -> None:
        raise RuntimeError("shutdown failed")

    context.request_shutdown = explode  # type: ignore[method-assign]
    async with httpx.AsyncClient() as client:
        assert (await client.post(_url(server, "/quitquitquit"))).text == "OK\n"
        await asyncio.sleep(0.05)
        assert (await client.get(_url(server, "/ready"))).status_code == 200
