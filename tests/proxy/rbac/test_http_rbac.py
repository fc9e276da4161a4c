"""`envoy.filters.http.rbac`: policies on SPIFFE identities, paths, methods, headers and
addresses; shadow rules; the 403 and its response code details in the access log."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from tests.proxy.harness import (
    ROUTER,
    bootstrap,
    cluster,
    demo_upstreams,
    file_access_log,
    http_listener,
    read_log,
    running_proxy,
)
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority

CALLER = "spiffe://mesh.test/ns/default/sa/frontend"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def rbac_filter(**typed: Any) -> dict[str, Any]:
    return {"name": "envoy.filters.http.rbac", "typed_config": {"@type": RBAC_TYPE, **typed}}


def listener(log: Path, *filters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    found = http_listener(
        name="inbound",
        http_filters=[*filters, ROUTER],
        access_log=file_access_log(log, "%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\n"),
    )
    found.update(extra)
    return found


async def test_only_the_admitted_spiffe_id_gets_through(tmp_path: Path) -> None:
    ca = Authority()
    server = ca.issue("backend").write(tmp_path, "server")
    caller = ca.issue("frontend", dns=(), ips=(), uris=(CALLER,)).write(tmp_path, "caller")
    other = ca.issue("other", dns=(), ips=(), uris=("spiffe://mesh.test/x",)).write(tmp_path, "o")
    ca_path = ca.write(tmp_path)
    policy = {
        "permissions": [{"any": True}],
        "principals": [{"authenticated": {"principal_name": {"exact": CALLER}}}],
    }
    log = tmp_path / "access.log"
    config = tlsconfig.with_tls(
        listener(log, rbac_filter(rules={"action": "ALLOW", "policies": {"frontend": policy}})),
        tlsconfig.downstream(cert=server[0], key=server[1], ca=ca_path),
    )
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([config], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        port = proxy.listener_port("inbound")
        for pair, status in ((caller, 200), (other, 403), (None, 403)):
            context = ssl.create_default_context(cafile=str(ca_path))
            if pair is not None:
                context.load_cert_chain(str(pair[0]), str(pair[1]))
            async with httpx.AsyncClient(verify=context) as client:
                response = await client.get(f"https://localhost:{port}/x")
            assert response.status_code == status, pair
            if status == 403:
                assert response.text == "RBAC: access denied"
        store = proxy.store
        assert store.counter("http.inbound.rbac.allowed").value == 1
        assert store.counter("http.inbound.rbac.denied").value == 2
        lines = await read_log(log, 3)
    assert lines == [
        "200 -",
        "403 rbac_access_denied_matched_policy[none]",
        "403 rbac_access_denied_matched_policy[none]",
    ]


async def test_deny_rules_paths_methods_ports_and_shadow_rules(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    deny = {
        "action": "DENY",
        "policies": {
            "no-admin-writes": {
                "permissions": [
                    {
                        "and_rules": {
                            "rules": [
                                {"url_path": {"path": {"prefix": "/admin"}}},
                                {"header": {"name": ":method", "string_match": {"exact": "POST"}}},
                            ]
                        }
                    }
                ],
                "principals": [{"any": True}],
            },
            "not-from-10": {
                "permissions": [{"any": True}],
                "principals": [{"remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}],
            },
        },
    }
    shadow = {
        "action": "ALLOW",
        "policies": {
            "only-port-1": {
                "permissions": [{"destination_port": 1}],
                "principals": [{"any": True}],
            }
        },
    }
    config = listener(log, rbac_filter(rules=deny, shadow_rules=shadow))
    config["filter_chains"][0]["filters"][0]["typed_config"]["use_remote_address"] = True
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([config], [cluster("backend", [ups[0].port])])) as proxy,
        httpx.AsyncClient() as client,
    ):
        base = f"http://127.0.0.1:{proxy.listener_port('inbound')}"
        assert (await client.get(f"{base}/admin/x")).status_code == 200
        assert (await client.post(f"{base}/admin/x?q=1", content=b"x")).status_code == 403
        assert (await client.post(f"{base}/other", content=b"x")).status_code == 200
        # remote_ip is the trusted client address: x-forwarded-for counts only when trusted
        # hops say so, so a forged header does not make this client 10.1.2.3.
        forged = {"x-forwarded-for": "10.1.2.3"}
        assert (await client.get(f"{base}/", headers=forged)).status_code == 200
        store = proxy.store
        assert store.counter("http.inbound.rbac.denied").value == 1
        assert store.counter("http.inbound.rbac.allowed").value == 3
        assert store.counter("http.inbound.rbac.shadow_denied").value == 4
        lines = await read_log(log, 4)
    assert lines[1] == "403 rbac_access_denied_matched_policy[no-admin-writes]"


def test_rbac_config_errors_name_their_field(tmp_path: Path) -> None:
    bad = {
        "action": "ALLOW",
        "policies": {
            "p": {"permissions": [{"metadata": {"filter": "x"}}], "principals": []},
        },
    }
    config = listener(tmp_path / "a.log", rbac_filter(rules=bad))
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(bootstrap([config], [cluster("backend", [1])])))
    found = sorted(str(e) for e in info.value.errors)
    prefix = (
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
        ".http_filters[0].typed_config.rules.policies"
    )
    assert any(f"{prefix}['p'].permissions[0].metadata" in line for line in found), found
    assert any(f"{prefix}['p'].principals" in line for line in found), found
    # Not before the router: RBAC after it is refused too.
    config = listener(tmp_path / "a.log")
    hcm = config["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [ROUTER, rbac_filter()]
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(bootstrap([config], [cluster("backend", [1])])))
    assert any("router filter must be the last" in str(e) for e in info.value.errors)


async def test_rbac_costs_nothing_when_absent(tmp_path: Path) -> None:
    config = listener(tmp_path / "a.log")
    async with (
        demo_upstreams(1) as ups,
        running_proxy(bootstrap([config], [cluster("backend", [ups[0].port])])) as proxy,
    ):
        running = proxy.listeners[0].runtime.chains[0]
        assert running.rbac_stats is None  # type: ignore[union-attr]
        assert not any(c.name.startswith("http.inbound.rbac") for c in proxy.store.counters())
