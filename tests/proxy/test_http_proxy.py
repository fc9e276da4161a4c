"""End to end: real demo upstreams, the real proxy, real clients (httpx, raw sockets, curl)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from tests.proxy.harness import (
    bootstrap,
    cluster,
    demo_upstreams,
    file_access_log,
    http_listener,
    running_proxy,
)
from tests.proxy.rawclient import send_and_read, split_responses


async def test_round_robin_and_keepalive_pooling() -> None:
    async with (
        demo_upstreams(2) as ups,
        running_proxy(
            bootstrap([http_listener()], [cluster("backend", [u.port for u in ups])])
        ) as proxy,
    ):
        port = proxy.listener_port("http")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            names = []
            for _ in range(6):
                response = await client.get("/hello")
                assert response.status_code == 200
                names.append(response.headers["x-upstream-name"])
        assert names == ["up-0", "up-1"] * 3
        stats = proxy.store
        assert stats.counter("cluster.backend.upstream_rq_2xx").value == 6
        assert stats.counter("http.http.downstream_rq_2xx").value == 6
        # Six requests over one client connection reuse one pooled connection per upstream host.
        assert stats.counter("cluster.backend.upstream_cx_total").value == 2


async def test_bodies_content_length_and_chunked() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("http")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/echo", content=b"hello world")
            assert response.json()["body_bytes"] == 11

            async def gen():  # type: ignore[no-untyped-def]
                for _ in range(10):
                    yield b"x" * 1000

            response = await client.post("/echo", content=gen())
            echoed = response.json()
            assert echoed["body_bytes"] == 10000
            assert echoed["headers"].get("transfer-encoding") == "chunked"
            response = await client.get("/chunked/100000")
            assert len(response.content) == 100000


async def test_pipelined_requests_answered_in_order() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("http")
        requests = (
            b"".join(f"GET /p{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for i in range(5))
            + b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        raw = await send_and_read(port, requests)
        responses = split_responses(raw)
        paths = [json.loads(body)["path"] for _, _, body in responses]
        assert paths == [f"/p{i}" for i in range(5)] + ["/last"]


async def test_expect_100_continue_http10_and_head() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(http_protocol_options={"accept_http_10": True})],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        port = proxy.listener_port("http")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /e HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"abcde")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()

        raw = await send_and_read(port, b"GET /old HTTP/1.0\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200")
        body = raw.partition(b"\r\n\r\n")[2]
        assert json.loads(body)["path"] == "/old"

        raw = await send_and_read(
            port, b"HEAD /bytes/1000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"content-length: 1000" in head.lower() and body == b""


async def test_http10_rejected_by_default() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        raw = await send_and_read(proxy.listener_port("http"), b"GET / HTTP/1.0\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 426")


async def test_websocket_upgrade_is_tunnelled() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(upgrade_configs=[{"upgrade_type": "websocket"}])],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        port = proxy.listener_port("http")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        writer.write(b"ping through the tunnel")
        echoed = await asyncio.wait_for(reader.readexactly(len(b"ping through the tunnel")), 5)
        assert echoed == b"ping through the tunnel"
        writer.close()


async def test_upgrade_not_configured_is_forbidden() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        raw = await send_and_read(
            proxy.listener_port("http"),
            b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        )
        assert raw.startswith(b"HTTP/1.1 403")


async def test_forwarding_headers() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(use_remote_address=True)],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        port = proxy.listener_port("http")
        raw = await send_and_read(
            port,
            b"GET /h HTTP/1.1\r\nhost: x\r\nconnection: close, x-private\r\nx-private: secret\r\n"
            b"keep-alive: timeout=5\r\nte: trailers\r\nproxy-authorization: b\r\n"
            b"x-forwarded-for: 10.0.0.1\r\n\r\n",
        )
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        seen = json.loads(body)["headers"]
        for hop in ("x-private", "keep-alive", "te", "proxy-authorization"):
            assert hop not in seen, hop
        assert seen["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert len(seen["x-request-id"]) == 36
        assert b"x-envoy-upstream-service-time" in head


async def test_routes_direct_response_redirect_and_404() -> None:
    routes = [
        {
            "match": {"path": "/health"},
            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
        },
        {"match": {"prefix": "/old/"}, "redirect": {"prefix_rewrite": "/new/"}},
        {
            "match": {"prefix": "/api/", "headers": [{"name": "x-canary", "present_match": True}]},
            "route": {"cluster": "canary", "prefix_rewrite": "/v2/"},
            "response_headers_to_add": [{"header": {"key": "x-route", "value": "canary"}}],
        },
        {"match": {"prefix": "/api/"}, "route": {"cluster": "backend"}},
    ]
    async with (
        demo_upstreams(2) as ups,
        running_proxy(
            bootstrap(
                [http_listener(routes=routes)],
                [cluster("backend", [ups[0].port]), cluster("canary", [ups[1].port])],
            )
        ) as proxy,
    ):
        port = proxy.listener_port("http")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/health")
            assert (response.status_code, response.text) == (200, "ok")
            response = await client.get("/old/page?q=1")
            assert response.status_code == 301
            assert response.headers["location"].endswith("/new/page?q=1")
            response = await client.get("/api/items", headers={"x-canary": "1"})
            assert response.headers["x-upstream-name"] == "up-1"
            assert response.headers["x-route"] == "canary"
            assert response.json()["path"] == "/v2/items"
            response = await client.get("/api/items")
            assert response.headers["x-upstream-name"] == "up-0"
            assert (await client.get("/nowhere")).status_code == 404
        assert proxy.store.counter("http.http.no_route").value == 1


async def test_upstream_failures_are_503_and_504(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log_path = tmp_path / "access.log"
    access_log = file_access_log(log_path, "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER%\n")
    routes = [
        {"match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "0.3s"}},
    ]
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(routes=routes, access_log=access_log)],
                [cluster("backend", [ups[0].port]), cluster("dead", [1])],
            )
        ) as proxy,
    ):
        port = proxy.listener_port("http")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/dead")
            assert response.status_code == 503
            assert "connection failure" in response.text
            response = await client.get("/delay/2000")
            assert response.status_code == 504
            assert response.text == "upstream request timeout"
            assert (await client.get("/fine")).status_code == 200
    lines = log_path.read_text().splitlines()
    assert lines == ["503 UF dead", "504 UT backend", "200 - backend"]


async def test_malformed_input_gets_4xx_and_others_are_served() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(request_headers_timeout="0.5s", max_request_headers_kb=8)],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        port = proxy.listener_port("http")
        raw = await send_and_read(port, b"GARBAGE\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 400")
        raw = await send_and_read(
            port,
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZZ\r\nabc\r\n",
        )
        assert raw.startswith(b"HTTP/1.1 400")
        flood = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(200))
        raw = await send_and_read(port, b"GET / HTTP/1.1\r\nhost: x\r\n" + flood + b"\r\n")
        assert raw.startswith(b"HTTP/1.1 431")
        # Slowloris: headers never finish; the proxy answers 408 and closes.
        raw = await send_and_read(port, b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: 1\r\n", timeout=5)
        assert raw.startswith(b"HTTP/1.1 408")
        # Truncated request: the client closes mid-body; nothing is sent upstream.
        raw = await send_and_read(
            port, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nshort", timeout=0.5
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/still-serving")).status_code == 200


async def test_ipv6_and_several_listeners() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(
            bootstrap(
                [http_listener(name="v4"), http_listener(name="v6", host="::1")],
                [cluster("backend", [ups[0].port])],
            )
        ) as proxy,
    ):
        async with httpx.AsyncClient() as client:
            r4 = await client.get(f"http://127.0.0.1:{proxy.listener_port('v4')}/a")
            r6 = await client.get(f"http://[::1]:{proxy.listener_port('v6')}/b")
        assert r4.status_code == r6.status_code == 200


async def test_curl_through_the_proxy() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("http")
        process = await asyncio.create_subprocess_exec(
            "curl",
            "-s",
            "-d",
            "payload",
            f"http://127.0.0.1:{port}/curl",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        assert json.loads(out)["body_bytes"] == 7


async def test_invalid_upstream_response_is_502() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_proxy(
            bootstrap([http_listener()], [cluster("backend", [port])])
        ) as proxy:
            raw = await send_and_read(
                proxy.listener_port("http"),
                b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            assert raw.startswith(b"HTTP/1.1 502")
    finally:
        server.close()


async def test_absolute_form_target_is_routed_by_its_authority() -> None:
    vhosts = [
        {
            "name": "a",
            "domains": ["a.example"],
            "routes": [
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": "a"}},
                }
            ],
        },
        {
            "name": "other",
            "domains": ["*"],
            "routes": [
                {
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": "other"}},
                }
            ],
        },
    ]
    async with running_proxy(bootstrap([http_listener(virtual_hosts=vhosts)], [])) as proxy:
        port = proxy.listener_port("http")
        raw = await send_and_read(
            port,
            b"GET http://a.example/x?y HTTP/1.1\r\nhost: b.example\r\nconnection: close\r\n\r\n",
        )
        assert raw.endswith(b"\r\n\r\na")
        raw = await send_and_read(port, b"GET ftp://a/x HTTP/1.1\r\nhost: x\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 400")


SMUGGLING_AND_MALFORMED = {
    "content-length with chunked": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Content-Length: 5\r\n\r\nabcde",
    "negative content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "overflowing content-length": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 99999999999999999999999\r\n\r\n",
    "space in a header name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    "obsolete line folding": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  more\r\n\r\n",
    "unknown transfer-coding": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "bare LF line ends": b"GET / HTTP/1.1\nHost: x\n\n",
    "NUL in the target": b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    # The whole preface is HTTP/2 under codec_type AUTO (tests/proxy/http/test_h2_downstream.py);
    # one that stops matching part-way is HTTP/1.1's to refuse, with all it sent.
    "HTTP/2 preface gone wrong": b"PRI * HTTP/2.0\r\n\r\nXM\r\n\r\n",
    "no host": b"GET / HTTP/1.1\r\n\r\n",
}


async def test_smuggling_shapes_are_refused_with_400() -> None:
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([http_listener()], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("http")
        for name, data in SMUGGLING_AND_MALFORMED.items():
            raw = await send_and_read(port, data, timeout=2)
            assert raw.startswith(b"HTTP/1.1 400"), name
        # None of them reached the upstream.
        assert ups[0].requests_served == 0


async def test_replies_without_an_exchange_are_logged(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    access_log = file_access_log(log_path, "%RESPONSE_CODE% %RESPONSE_FLAGS%\n")
    listener = http_listener(access_log=access_log, request_headers_timeout="0.3s")
    async with running_proxy(bootstrap([listener], [cluster("backend", [1])])) as proxy:
        port = proxy.listener_port("http")
        assert (await send_and_read(port, b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400")
        slow = await send_and_read(port, b"GET / HTTP/1.1\r\nhost: x\r\n", timeout=3)
        assert slow.startswith(b"HTTP/1.1 408")
    # Envoy sets no flag for the request-header timeout (only the stream idle timeout is SI).
    assert log_path.read_text().splitlines() == ["400 DPE", "408 -"]


async def test_access_log_reports_the_trusted_client_address(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    access_log = file_access_log(log_path, "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\n")
    routes = [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]
    listener = http_listener(routes=routes, access_log=access_log)  # use_remote_address: false
    async with running_proxy(bootstrap([listener], [])) as proxy, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{proxy.listener_port('http')}/"
        await client.get(url, headers={"x-forwarded-for": "203.0.113.7"})
        await client.get(url)
    assert log_path.read_text().splitlines() == ["203.0.113.7", "127.0.0.1"]


async def test_a_backtracking_pathological_safe_regex_does_not_stall_the_proxy() -> None:
    # On a backtracking engine this pattern against this path takes longer than the test runs.
    routes = [
        {"match": {"safe_regex": {"regex": r"(/(\w+-?)*)*"}}, "direct_response": {"status": 418}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200}},
    ]
    async with running_proxy(bootstrap([http_listener(routes)], [])) as proxy:
        port = proxy.listener_port("http")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            started = asyncio.get_running_loop().time()
            assert (await client.get("/" + "a" * 3000 + "!")).status_code == 200
            assert (await client.get("/" + "a-" * 3000)).status_code == 418
            assert asyncio.get_running_loop().time() - started < 1.0
