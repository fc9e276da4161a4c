"""examples/front-proxy.yaml, run as a user would, exercising each match and action it uses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.proxy.harness import demo_upstreams, running_proxy

EXAMPLE = Path(__file__).parents[2] / "examples" / "front-proxy.yaml"


def _retarget(config: dict[str, Any], ports: dict[str, int]) -> dict[str, Any]:
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"]["port_value"] = 0
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    for cluster in config["static_resources"]["clusters"]:
        for locality in cluster["load_assignment"]["endpoints"]:
            for lb_endpoint in locality["lb_endpoints"]:
                lb_endpoint["endpoint"]["address"]["socket_address"]["port_value"] = ports[
                    cluster["name"]
                ]
    # The example logs every request to stdout; tests keep their output quiet.
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"].pop("access_log")
    return config


async def test_front_proxy_example() -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    async with demo_upstreams(3) as (web, api, canary):
        ports = {"web": web.port, "api": api.port, "api_canary": canary.port}
        async with running_proxy(_retarget(config, ports)) as proxy:
            url = f"http://127.0.0.1:{proxy.listener_port('ingress_http')}"
            async with httpx.AsyncClient(base_url=url) as client:
                api_host = {"host": "api.example.com"}
                r = await client.get("/v1/items", headers={**api_host, "x-canary": "true"})
                assert r.headers["x-upstream-name"] == "up-2" and r.json()["path"] == "/items"
                r = await client.get("/v1/users/42", headers=api_host)
                assert r.headers["x-upstream-name"] == "up-1"
                assert (r.json()["path"], r.json()["query"]) == ("/users", "id=42")
                r = await client.get("/v1/items?debug=1", headers=api_host)
                assert r.status_code == 403 and r.text == "debug is not allowed\n"
                r = await client.get("/v1/items", headers={"host": "api.example.com:8443"})
                assert r.json()["path"] == "/items" and r.headers["x-proxy"] == "remora"
                r = await client.get("/healthz")
                assert (r.status_code, r.text) == (200, "ok\n")
                r = await client.get("/old/a?b=c")
                assert r.status_code == 308 and r.headers["location"].endswith("/new/a?b=c")
                r = await client.get("/secure/x")
                assert r.status_code == 301 and r.headers["location"].startswith("https://")
                r = await client.get("/static/app.js", headers={"x-internal": "drop me"})
                seen = r.json()["headers"]
                assert seen["host"] == "static.internal" and "x-internal" not in seen
                assert r.headers["x-upstream-name"] == "up-0"
                names = [(await client.get("/page")).headers["x-upstream-name"] for _ in range(200)]
                assert 150 < names.count("up-0") < 200 and names.count("up-1") > 0
            # The TCP listener on [::1] forwards to the STRICT_DNS web cluster.
            reader, writer = await asyncio.open_connection(
                "::1", proxy.listener_port("ingress_tcp")
            )
            writer.write(b"GET /tcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert raw.startswith(b"HTTP/1.1 200") and b"up-0" in raw
