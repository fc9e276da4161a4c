"""LEAST_REQUEST, RANDOM, RING_HASH and MAGLEV through the real proxy, against real upstreams."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy


def _config(ports: list[int], hash_policy: list[dict[str, Any]], **lb: Any) -> dict[str, Any]:
    routes = [
        {"match": {"prefix": "/"}, "route": {"cluster": "backend", "hash_policy": hash_policy}}
    ]
    return bootstrap([http_listener(routes=routes)], [cluster("backend", ports, **lb)])


async def _upstream_of(client: httpx.AsyncClient, path: str = "/", **kwargs: Any) -> str:
    response = await client.get(path, **kwargs)
    assert response.status_code == 200
    return response.headers["x-upstream-name"]


async def test_ring_hash_keeps_each_user_on_one_host_and_moves_one_in_n_on_growth() -> None:
    async with demo_upstreams(4) as ups:
        ports = [u.port for u in ups]
        config = _config(ports[:3], [{"header": {"header_name": "x-user"}}], lb_policy="RING_HASH")
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('http')}"
            users = [f"user-{i}" for i in range(120)]
            async with httpx.AsyncClient(base_url=url) as client:
                first = {u: await _upstream_of(client, headers={"x-user": u}) for u in users}
                again = {u: await _upstream_of(client, headers={"x-user": u}) for u in users}
                assert first == again
                assert set(first.values()) == {"up-0", "up-1", "up-2"}

                grown = compile_bootstrap(
                    parse_dict(
                        _config(
                            ports, [{"header": {"header_name": "x-user"}}], lb_policy="RING_HASH"
                        )
                    )
                )
                await proxy.update_clusters(grown.clusters)
                after = {u: await _upstream_of(client, headers={"x-user": u}) for u in users}
            moved = [u for u in users if after[u] != first[u]]
            # About a quarter move, and only to the host that joined.
            assert 12 <= len(moved) <= 50, len(moved)
            assert {after[u] for u in moved} == {"up-3"}


async def test_maglev_by_cookie_then_query_parameter() -> None:
    hash_policy = [
        {"cookie": {"name": "sid"}, "terminal": True},
        {"query_parameter": {"name": "u"}},
    ]
    async with (
        demo_upstreams(3) as ups,
        running_proxy(_config([u.port for u in ups], hash_policy, lb_policy="MAGLEV")) as proxy,
    ):
        url = f"http://127.0.0.1:{proxy.listener_port('http')}"
        async with httpx.AsyncClient(base_url=url) as client:
            by_cookie = {
                s: {
                    await _upstream_of(client, f"/?u={n}", headers={"cookie": f"sid={s}"})
                    for n in range(4)
                }
                for s in ("a", "b", "c", "d", "e", "f")
            }
            # The cookie is terminal: the query parameter changes nothing while it is sent.
            assert all(len(hosts) == 1 for hosts in by_cookie.values())
            by_query = {n: await _upstream_of(client, f"/?u={n}") for n in range(30)}
            assert by_query == {n: await _upstream_of(client, f"/?u={n}") for n in range(30)}
            assert len(set(by_query.values())) == 3


async def test_least_request_steers_new_requests_away_from_a_busy_host() -> None:
    async with (
        demo_upstreams(2) as ups,
        running_proxy(
            _config(
                [u.port for u in ups],
                [],
                lb_policy="LEAST_REQUEST",
                # 20 samples: the busy host is picked only if all 20 land on it (1 in 10^6).
                least_request_lb_config={"choice_count": 20},
            )
        ) as proxy,
    ):
        url = f"http://127.0.0.1:{proxy.listener_port('http')}"
        async with httpx.AsyncClient(base_url=url) as client:
            slow = asyncio.create_task(client.get("/delay/1500"))
            await asyncio.sleep(0.2)
            host = next(h for h in proxy.clusters["backend"].hosts if h.rq_active == 1)
            busy_name = next(u.name for u in ups if u.port == host.port)
            quick = [await _upstream_of(client) for _ in range(20)]
            assert busy_name not in quick
            assert (await slow).headers["x-upstream-name"] == busy_name


async def test_random_uses_every_host() -> None:
    async with (
        demo_upstreams(3) as ups,
        running_proxy(_config([u.port for u in ups], [], lb_policy="RANDOM")) as proxy,
    ):
        url = f"http://127.0.0.1:{proxy.listener_port('http')}"
        async with httpx.AsyncClient(base_url=url) as client:
            seen = {await _upstream_of(client) for _ in range(60)}
        assert seen == {"up-0", "up-1", "up-2"}


async def test_tcp_proxy_hashes_the_client_address() -> None:
    from tests.proxy.harness import tcp_listener

    async with demo_upstreams(3) as ups:
        listener = tcp_listener("backend", hash_policy=[{"source_ip": {}}])
        config = bootstrap(
            [listener], [cluster("backend", [u.port for u in ups], lb_policy="MAGLEV")]
        )
        async with running_proxy(config) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('tcp')}"

            async def via(source: str) -> str:
                transport = httpx.AsyncHTTPTransport(local_address=source)
                async with httpx.AsyncClient(base_url=url, transport=transport) as client:
                    return await _upstream_of(client)

            sources = [f"127.0.0.{i}" for i in range(1, 25)]
            first = {s: await via(s) for s in sources}
            assert first == {s: await via(s) for s in sources}  # a new connection each time
            assert len(set(first.values())) > 1
