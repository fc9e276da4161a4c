"""The directory source: mesh schema, raw resources, validation naming file and field, watching."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from remora.xds import mesh, types
from remora.xds.cache import SnapshotCache
from remora.xds.source import DirectorySource, SourceError, load_directory, mesh_group

MESH = """
services:
  greeter:
    endpoints:
      - {address: 127.0.0.1, port: 9001, locality: a}
      - {address: 127.0.0.1, port: 9002, weight: 3, locality: b}
    localities: {a: 5}
    routes:
      - {prefix: /, to: {greeter: 90, canary: 10}, timeout: 2s}
    policies: {connect_timeout: 0.5s, max_requests: 10}
  canary:
    endpoints: [{address: 127.0.0.1, port: 9003}]
"""


def _write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


def test_mesh_generates_proxyless_and_sidecar_resources(tmp_path: Path) -> None:
    _write(tmp_path, "mesh.yaml", MESH)
    snaps = load_directory(tmp_path)
    proxyless, sidecar = snaps[mesh.PROXYLESS], snaps[mesh.SIDECAR]
    listener = proxyless.resources(types.LISTENER)["greeter"].message
    assert isinstance(listener, listener_pb2.Listener) and listener.HasField("api_listener")
    hcm = hcm_pb2.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(hcm)
    assert hcm.rds.route_config_name == "greeter" and hcm.rds.config_source.HasField("ads")
    assert hcm.http_filters[-1].name == "envoy.filters.http.router"
    assert sidecar.resources(types.LISTENER)["greeter"].message.HasField("address")
    cluster = proxyless.resources(types.CLUSTER)["greeter"].message
    assert cluster.type == cluster.EDS and cluster.eds_cluster_config.eds_config.HasField("ads")
    cla = proxyless.resources(types.ENDPOINT)["greeter"].message
    weights = {loc.locality.zone: loc.load_balancing_weight.value for loc in cla.endpoints}
    assert weights == {"a": 5, "b": 3}
    route = proxyless.resources(types.ROUTE)["greeter"].message
    weighted = route.virtual_hosts[0].routes[0].route.weighted_clusters.clusters
    assert [(c.name, c.weight.value) for c in weighted] == [("greeter", 90), ("canary", 10)]
    # Shared resources are the same resource (same version) in both groups.
    assert proxyless.version(types.ENDPOINT) == sidecar.version(types.ENDPOINT)


def test_loading_twice_gives_identical_versions(tmp_path: Path) -> None:
    _write(tmp_path, "mesh.yaml", MESH)
    assert load_directory(tmp_path) == load_directory(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n  s:\n    endpoints: [{address: 1.2.3.4, port: 70000}]\n",
         "bad.yaml: services.s.endpoints[0].port"),
        ("services:\n  s:\n    routes: [{to: nowhere}]\n", "bad.yaml: services.s.routes[0].to"),
        ("services:\n  s:\n    endpoint: []\n", "bad.yaml: services.s.endpoint"),
        ("resources:\n  - {'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster, nme: x}\n",
         "bad.yaml: resources[0]"),
        ("services: [\n", "bad.yaml"),
    ],
)  # fmt: skip
def test_invalid_files_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    _write(tmp_path, "bad.yaml", text)
    with pytest.raises(SourceError) as info:
        load_directory(tmp_path)
    assert any(str(e).startswith(expected) for e in info.value.errors), str(info.value)


def test_raw_resources_are_served_to_every_group(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "raw.yaml",
        "resources:\n"
        "  - {'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster, name: raw,"
        " connect_timeout: 1s}\n",
    )
    snaps = load_directory(tmp_path)
    for group in mesh.GROUPS:
        assert "raw" in snaps[group].resources(types.CLUSTER)


def test_node_groups() -> None:
    remora = base_pb2.Node(id="p1", user_agent_name="remora")
    assert mesh_group(remora) == mesh.SIDECAR
    assert mesh_group(base_pb2.Node(id="g", user_agent_name="gRPC Python")) == mesh.PROXYLESS
    custom = base_pb2.Node(id="x")
    custom.metadata.fields["remora.group"].string_value = "edge"
    assert mesh_group(custom) == "edge"


async def test_watch_applies_changes_and_keeps_serving_on_errors(tmp_path: Path) -> None:
    _write(tmp_path, "mesh.yaml", MESH)
    cache = SnapshotCache(mesh_group)
    source = DirectorySource(tmp_path, cache)
    ready = asyncio.Event()
    task = asyncio.create_task(source.watch(ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        before = cache.get(mesh.SIDECAR)
        assert before is not None
        await asyncio.sleep(0.2)  # let the watcher start
        started = time.monotonic()
        _write(tmp_path, "mesh.yaml", MESH.replace("9003", "9004"))
        while cache.get(mesh.SIDECAR) == before:
            assert time.monotonic() - started < 1.0, "change not applied within a second"
            await asyncio.sleep(0.02)
        good = cache.get(mesh.SIDECAR)
        _write(tmp_path, "mesh.yaml", MESH.replace("9003", "port-nine"))
        deadline = time.monotonic() + 2
        while not source.last_error and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert "mesh.yaml: services.canary.endpoints[0].port" in source.last_error
        assert cache.get(mesh.SIDECAR) is good
    finally:
        task.cancel()
