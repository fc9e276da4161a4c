"""gRPC proxyless interop: grpcio's own xDS client, pointed at remora's control plane.

The client runs in a subprocess because grpcio reads GRPC_XDS_BOOTSTRAP once per process. It
resolves `xds:///greeter` through the Listener, RouteConfiguration (over RDS), Cluster and
ClusterLoadAssignment generated from the mesh schema, and calls two real grpcio servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from remora.xds.cache import SnapshotCache
from remora.xds.server import XdsServer
from remora.xds.source import DirectorySource, mesh_group

MESH = """
services:
  greeter:
    endpoints: [{{address: 127.0.0.1, port: {a}}}]
    routes: [{{prefix: /, to: {{greeter: 3, greeter-b: 1}}}}]
  greeter-b:
    endpoints: [{{address: 127.0.0.1, port: {b}}}]
"""

CLIENT = """
import collections, json, sys
import grpc
channel = grpc.insecure_channel("xds:///greeter")
who = channel.unary_unary("/remora.test.Echo/Who")
counts = collections.Counter()
for _ in range(int(sys.argv[1])):
    counts[who(b"", timeout=10, wait_for_ready=True).decode()] += 1
print(json.dumps(counts))
"""


@asynccontextmanager
async def _backend(name: str) -> AsyncIterator[int]:
    async def who(_request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return name.encode()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(who)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("remora.test.Echo", {"Who": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


async def test_grpc_xds_client_reaches_backends_with_weighted_routing(tmp_path: Path) -> None:
    async with _backend("a") as port_a, _backend("b") as port_b:
        config = tmp_path / "config"
        config.mkdir()
        (config / "mesh.yaml").write_text(MESH.format(a=port_a, b=port_b))
        cache = SnapshotCache(mesh_group)
        assert DirectorySource(config, cache).apply()
        xds = XdsServer(cache)
        xds_port = await xds.start("127.0.0.1", 0)
        bootstrap = tmp_path / "bootstrap.json"
        bootstrap.write_text(
            json.dumps(
                {
                    "xds_servers": [
                        {
                            "server_uri": f"127.0.0.1:{xds_port}",
                            "channel_creds": [{"type": "insecure"}],
                            "server_features": ["xds_v3"],
                        }
                    ],
                    "node": {"id": "grpc-client-1"},
                }
            )
        )
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, "400",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()[-2000:]
            counts = json.loads(out)
            # 3:1 weights over 400 calls: about 300 and 100; both backends are reached.
            assert counts.keys() == {"a", "b"}, counts
            assert 220 <= counts["a"] <= 370, counts
            assert cache.nacks.total == 0, [n.reason for n in cache.nacks.recent]
        finally:
            await xds.stop(0)
