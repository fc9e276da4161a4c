"""Applying xDS listener updates: all or nothing, checked like a bootstrap, static ones win.

A proxy with a static listener and cluster takes LDS from an in-process control plane. An update
that would put two listeners on one address is NACKed before anything changes; one whose socket
cannot be bound (another process holds the port) is NACKed with every listener as it was, and
the next good update is applied; a dynamic listener named like a static one is ignored with a
warning, as in Envoy.
"""

from __future__ import annotations

import logging
import socket

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.proxy.server import ProxyServer
from remora.xds.cache import DEFAULT, SnapshotCache
from remora.xds.client import AdsClient
from remora.xds.server import XdsServer
from tests.proxy.procs import free_port
from tests.xds.helpers import bound as _bound
from tests.xds.helpers import listener_snapshot as _snapshot
from tests.xds.helpers import tcp_listener_dict as _listener
from tests.xds.helpers import until as _until


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_listener_updates_are_checked_and_applied_all_or_nothing(
    api_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SnapshotCache()
    xds = XdsServer(cache)
    xds_port = await xds.start("127.0.0.1", 0)
    static_port, port_a, port_c = free_port(), free_port(), free_port()
    config = {
        "node": {"id": "p1"},
        "static_resources": {
            "listeners": [_listener("static", static_port)],
            "clusters": [{"name": "backend", "type": "STATIC", "connect_timeout": "1s",
                          "load_assignment": {"cluster_name": "backend", "endpoints": []}}],
        },
        "dynamic_resources": {
            "ads_config": {"api_type": api_type, "transport_api_version": "V3",
                           "grpc_services": [{"google_grpc": {
                               "target_uri": f"127.0.0.1:{xds_port}"}}]},
            "lds_config": {"ads": {}},
        },
    }  # fmt: skip
    proxy = ProxyServer(compile_bootstrap(parse_dict(config)), 0.5)
    await proxy.start()
    client = AdsClient(proxy, f"127.0.0.1:{xds_port}", backoff_base=0.05, backoff_max=0.2)
    caplog.set_level(logging.WARNING, logger="remora.xds.client")
    client.start()
    outsider = socket.socket()
    try:
        # A dynamic listener named like the static one is ignored (the bootstrap's wins).
        cache.set_snapshot(DEFAULT, _snapshot(_listener("static", port_c), _listener("a", port_a)))
        await _until(lambda: "a" in _bound(proxy), "dynamic listener a")
        assert _bound(proxy) == {"static": static_port, "a": port_a}
        assert any("'static' is defined statically" in r.message for r in caplog.records)
        assert cache.nacks.total == 0

        # Two listeners on one address: refused before anything changes.
        cache.set_snapshot(DEFAULT, _snapshot(_listener("a", port_a), _listener("b", port_a)))
        await _until(lambda: cache.nacks.total == 1, "NACK of a duplicate address")
        assert "duplicate listener address" in cache.nacks.recent[-1].reason
        assert _bound(proxy) == {"static": static_port, "a": port_a}

        # An address another process holds: the bind fails, nothing changes, and it is NACKed.
        outsider.bind(("127.0.0.1", port_c))
        outsider.listen()
        cache.set_snapshot(DEFAULT, _snapshot(_listener("a", port_a, "a2"), _listener("c", port_c)))
        await _until(lambda: cache.nacks.total == 2, "NACK of an unbindable listener")
        assert "cannot bind" in cache.nacks.recent[-1].reason
        assert _bound(proxy) == {"static": static_port, "a": port_a}
        # Not half-applied:
        assert proxy.listeners[1].config.chains[0].network_filter.stat_prefix == "a"

        # Once the port is free, the next version is applied.
        outsider.close()
        cache.set_snapshot(DEFAULT, _snapshot(_listener("a", port_a, "a3"), _listener("c", port_c)))
        await _until(lambda: "c" in _bound(proxy), "listener c once its port is free")
        assert _bound(proxy) == {"static": static_port, "a": port_a, "c": port_c}
        assert cache.nacks.total == 2
    finally:
        outsider.close()
        await client.stop()
        await proxy.close()
        await xds.stop(0)
