"""Config updates at run time (what xDS drives): nothing in flight is dropped or changed."""

from __future__ import annotations

import asyncio

import httpx

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from tests.proxy.harness import bootstrap, cluster, demo_upstreams, http_listener, running_proxy
from tests.proxy.procs import free_port


def _compiled(routes_to: str, ports: dict[str, int], prefix: str = "http"):  # type: ignore[no-untyped-def]
    listener = http_listener(
        routes=[{"match": {"prefix": "/"}, "route": {"cluster": routes_to}}], stat_prefix=prefix
    )
    listener["address"]["socket_address"]["port_value"] = 0
    return compile_bootstrap(
        parse_dict(bootstrap([listener], [cluster(n, [p]) for n, p in ports.items()]))
    )


async def test_listener_and_cluster_updates_keep_connections() -> None:
    async with (
        demo_upstreams(3) as (a, b, c),
        running_proxy(bootstrap([http_listener()], [cluster("backend", [a.port])])) as proxy,
    ):
        port = proxy.listener_port("http")
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as old_client:
            assert (await old_client.get("/")).headers["x-upstream-name"] == "up-0"
            slow = asyncio.create_task(old_client.get("/delay/400"))
            await asyncio.sleep(0.1)

            # New clusters and a listener routing to `other`, on the same socket.
            updated = _compiled("other", {"backend": b.port, "other": c.port}, prefix="v2")
            await proxy.update_clusters(updated.clusters)
            await proxy.update_listeners(updated.listeners)
            assert proxy.listener_port("http") == port

            # The request in flight finishes on the upstream it started with.
            response = await slow
            assert response.status_code == 200 and response.headers["x-upstream-name"] == "up-0"
            # The old keep-alive connection keeps its routes; its cluster now points at `b`.
            assert (await old_client.get("/")).headers["x-upstream-name"] == "up-1"
        async with httpx.AsyncClient(base_url=url) as new_client:
            assert (await new_client.get("/")).headers["x-upstream-name"] == "up-2"
        assert proxy.store.counter("http.v2.downstream_rq_total").value == 1

        # Removing the listener stops accepting on its port.
        await proxy.update_listeners([])
        await asyncio.sleep(0.05)
        try:
            await asyncio.open_connection("127.0.0.1", port)
            raise AssertionError("listener should be gone")
        except OSError:
            pass


async def test_a_listener_renamed_on_its_address_keeps_its_socket() -> None:
    port = free_port()
    listener = http_listener()
    listener["address"]["socket_address"]["port_value"] = port
    async with (
        demo_upstreams(1) as (a,),
        running_proxy(bootstrap([listener], [cluster("backend", [a.port])])) as proxy,
    ):
        original = proxy.listeners[0].server
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).status_code == 200
            renamed = http_listener(name="ingress")
            renamed["address"]["socket_address"]["port_value"] = port
            config = compile_bootstrap(
                parse_dict(bootstrap([renamed], [cluster("backend", [a.port])]))
            )
            await proxy.update_listeners(config.listeners)
            # The same listening socket under the new name: nothing was closed and re-bound.
            assert [r.name for r in proxy.listeners] == ["ingress"]
            assert proxy.listeners[0].server is original and original.is_serving()
            assert (await client.get("/")).status_code == 200  # the kept-alive connection
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).status_code == 200
        assert proxy.store.counter("http.ingress.downstream_rq_total").value == 1
