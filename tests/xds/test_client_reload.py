"""A reload of the bootstrap beside listeners that come over ADS: the static ones still win.

A proxy with a static listener takes LDS from an in-process control plane, one dynamic listener
named like the static one (shadowed) and one of its own. A reload that drops the static listener
serves the shadowed dynamic one at once, without a new push; one whose new static listener takes
a dynamic listener's address keeps the static one and says so, and later pushes are checked
against the reloaded static set. A change to dynamic_resources or the node is kept out until a
restart.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from remora.proxy.cli import load
from remora.proxy.reload import Reloader
from remora.proxy.server import ProxyServer
from remora.xds.cache import DEFAULT, SnapshotCache
from remora.xds.client import AdsClient
from remora.xds.server import XdsServer
from tests.proxy.procs import free_port
from tests.xds.helpers import bound, listener_snapshot, tcp_listener_dict, until


def _bootstrap(xds_port: int, *listeners: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": {"id": "p1"},
        "static_resources": {
            "listeners": list(listeners),
            "clusters": [{"name": "backend", "type": "STATIC", "connect_timeout": "1s",
                          "load_assignment": {"cluster_name": "backend", "endpoints": []}}],
        },
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"google_grpc": {
                               "target_uri": f"127.0.0.1:{xds_port}"}}]},
            "lds_config": {"ads": {}},
        },
    }  # fmt: skip


async def test_a_reload_merges_with_dynamic_listeners_static_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SnapshotCache()
    xds = XdsServer(cache)
    xds_port = await xds.start("127.0.0.1", 0)
    static_port, port_a, port_c = free_port(), free_port(), free_port()
    path = tmp_path / "bootstrap.json"
    first = _bootstrap(xds_port, tcp_listener_dict("static", static_port))
    path.write_text(json.dumps(first))
    proxy = ProxyServer(load(str(path)), 0.5)
    await proxy.start()
    client = AdsClient(proxy, f"127.0.0.1:{xds_port}", backoff_base=0.05, backoff_max=0.2)
    reloader = Reloader(
        str(path), lambda: proxy.config, client.apply_static, proxy.store, load
    )  # fmt: skip
    caplog.set_level(logging.INFO)
    client.start()
    try:
        dynamic = (tcp_listener_dict("static", port_c), tcp_listener_dict("a", port_a))
        cache.set_snapshot(DEFAULT, listener_snapshot(*dynamic))
        await until(lambda: "a" in bound(proxy), "dynamic listener a")
        assert bound(proxy) == {"static": static_port, "a": port_a}

        # The static listener goes; a new static one takes dynamic `a`'s address.
        second = _bootstrap(xds_port, tcp_listener_dict("s2", port_a))
        path.write_text(json.dumps(second))
        assert await reloader.reload("test")
        assert bound(proxy) == {"s2": port_a, "static": port_c}
        assert any("'a' is on 127.0.0.1:" in r.message for r in caplog.records)
        assert "listeners added s2; removed static" in caplog.records[-1].message
        assert [r.name for r in proxy.config.listeners] == ["s2"]

        # Later pushes are checked against the reloaded static set: `a` on s2's address is
        # NACKed; once the control plane moves it, it is served again.
        edited_a = tcp_listener_dict("a", port_a, prefix="a2")
        cache.set_snapshot(DEFAULT, listener_snapshot(dynamic[0], edited_a))
        await until(lambda: cache.nacks.total == 1, "NACK of a listener on a static address")
        assert "listener 's2' has it" in cache.nacks.recent[-1].reason
        port_a2 = free_port()
        while port_a2 in (static_port, port_a, port_c):  # static_port is free at this point:
            port_a2 = free_port()  # the kernel may hand it out again, and the last reload takes it
        moved_a = (tcp_listener_dict("static", port_c), tcp_listener_dict("a", port_a2))
        cache.set_snapshot(DEFAULT, listener_snapshot(*moved_a))
        await until(lambda: "a" in bound(proxy), "dynamic listener a, moved")
        assert bound(proxy) == {"s2": port_a, "static": port_c, "a": port_a2}

        # Back to the first file: the static listener wins its name again.
        path.write_text(json.dumps(first))
        assert await reloader.reload("test")
        assert bound(proxy) == {"static": static_port, "a": port_a2}

        # dynamic_resources cannot change under a running ADS stream: kept, and logged.
        moved = copy.deepcopy(first)
        moved["dynamic_resources"]["ads_config"]["api_type"] = "DELTA_GRPC"
        moved["node"]["id"] = "p2"
        path.write_text(json.dumps(moved))
        caplog.clear()
        assert await reloader.reload("test")
        assert any("dynamic_resources changed, which needs a restart" in r.message
                   for r in caplog.records)  # fmt: skip
        assert any("node (the identity the ADS stream was opened with) changed" in r.message
                   for r in caplog.records)  # fmt: skip
        assert caplog.records[-1].message.endswith(": no change")
        assert proxy.config.node_id == "p1"
        assert proxy.config.source["dynamic_resources"] == first["dynamic_resources"]
        assert cache.nacks.total == 1
    finally:
        gc.unfreeze()  # a reload freezes the heap, as a proxy process wants; pytest's does not
        await reloader.close()
        await client.stop()
        await proxy.close()
        await xds.stop(0)
