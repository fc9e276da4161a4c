"""xDS scale bench: 1,000 clusters / 10,000 endpoints pushed to 100 ADS clients.

The control plane runs in this process; the clients (SotW ADS streams that subscribe to every
cluster's endpoints and ACK everything) run in a child process so the control plane's CPU and
memory figures are its own. Run: `.venv/bin/python bench/xds/run.py [--clients 100] [--delta]`;
`--delta` makes the clients incremental (DeltaAggregatedResources, `*` for CDS and every name for
EDS), so a change sends only the resources that changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

CLUSTERS, ENDPOINTS_PER_CLUSTER = 1000, 10


def _snapshot(changed_port: int = 0):  # type: ignore[no-untyped-def]
    from remora.xds.snapshot import Snapshot
    from tests.xds.helpers import cla, cluster

    messages = []
    for i in range(CLUSTERS):
        messages.append(cluster(f"svc-{i}"))
        ports = [20000 + j for j in range(ENDPOINTS_PER_CLUSTER)]
        if i == 0 and changed_port:
            ports[0] = changed_port
        messages.append(cla(f"svc-{i}", *ports))
    return Snapshot.build(messages)


async def _delta_clients(port: int, count: int) -> None:
    """Child, incremental: prints (client, type, system version) per response ACKed."""
    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    from remora.xds import types

    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    )
    names = [f"svc-{i}" for i in range(CLUSTERS)]

    async def one(index: int) -> None:
        queue: asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest] = asyncio.Queue()

        async def requests():  # type: ignore[no-untyped-def]
            while True:
                yield await queue.get()

        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources(
            requests()
        )
        first = discovery_pb2.DeltaDiscoveryRequest(
            type_url=types.CLUSTER, resource_names_subscribe=["*"]
        )
        first.node.id = f"client-{index}"
        queue.put_nowait(first)
        queue.put_nowait(
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=types.ENDPOINT, resource_names_subscribe=names
            )
        )
        async for response in call:
            queue.put_nowait(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=response.type_url, response_nonce=response.nonce
                )
            )
            version = response.system_version_info
            print(json.dumps([index, response.type_url[-7:], version]), flush=True)

    await asyncio.gather(*(one(i) for i in range(count)))


async def _clients(port: int, count: int) -> None:
    """Child: `count` streams; prints a line per (client, type, version) ACKed."""
    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    from remora.xds import types

    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    )
    names = [f"svc-{i}" for i in range(CLUSTERS)]

    async def one(index: int) -> None:
        queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

        async def requests():  # type: ignore[no-untyped-def]
            while True:
                yield await queue.get()

        def request(type_url: str, version: str = "", nonce: str = "", names=()):  # type: ignore[no-untyped-def]
            req = discovery_pb2.DiscoveryRequest(
                type_url=type_url, version_info=version, response_nonce=nonce,
                resource_names=list(names),
            )  # fmt: skip
            req.node.id = f"client-{index}"
            return req

        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            requests()
        )
        queue.put_nowait(request(types.CLUSTER))
        queue.put_nowait(request(types.ENDPOINT, names=names))
        async for response in call:
            wanted = names if response.type_url == types.ENDPOINT else ()
            queue.put_nowait(
                request(response.type_url, response.version_info, response.nonce, wanted)
            )
            print(json.dumps([index, response.type_url[-7:], response.version_info]), flush=True)

    await asyncio.gather(*(one(i) for i in range(count)))


async def _main(count: int, delta: bool) -> dict[str, object]:
    from remora.xds import types
    from remora.xds.cache import DEFAULT, SnapshotCache
    from remora.xds.server import XdsServer

    build_started = time.perf_counter()
    snapshot = _snapshot()
    build_seconds = time.perf_counter() - build_started
    cache = SnapshotCache()
    cache.set_snapshot(DEFAULT, snapshot)
    server = XdsServer(cache)
    port = await server.start("127.0.0.1", 0)
    cpu0 = time.process_time()
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--delta-child" if delta else "--child", str(port), str(count),
        stdout=asyncio.subprocess.PIPE, limit=1 << 20,
    )  # fmt: skip
    assert child.stdout is not None
    acked: dict[tuple[int, str], str] = {}

    async def until_all(versions: dict[str, str]) -> float:
        while not all(
            acked.get((i, t[-7:])) == v for i in range(count) for t, v in versions.items()
        ):
            line = await child.stdout.readline()  # type: ignore[union-attr]
            index, kind, version = json.loads(line)
            acked[(index, kind)] = version
        return time.perf_counter()

    want = {types.CLUSTER: snapshot.version(types.CLUSTER),
            types.ENDPOINT: snapshot.version(types.ENDPOINT)}  # fmt: skip
    initial = await until_all(want) - started
    initial_cpu = time.process_time() - cpu0
    await asyncio.sleep(0.5)

    # No-op: the same config rebuilt from scratch sends nothing.
    before = sum(server.stats.counters.values())
    noop_changed = cache.set_snapshot(DEFAULT, _snapshot())
    await asyncio.sleep(0.5)
    noop_sent = sum(server.stats.counters.values()) - before

    # One endpoint changes.
    changed = _snapshot(changed_port=30000)
    bytes_before = server.stats.counters[("response_bytes", "ClusterLoadAssignment")]
    cpu1 = time.process_time()
    t0 = time.perf_counter()
    cache.set_snapshot(DEFAULT, changed)
    want[types.ENDPOINT] = changed.version(types.ENDPOINT)
    one_change = await until_all(want) - t0
    one_change_cpu = time.process_time() - cpu1
    change_bytes = server.stats.counters[("response_bytes", "ClusterLoadAssignment")] - bytes_before
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child.terminate()
    await child.wait()
    await server.stop(0)
    return {
        "protocol": "delta" if delta else "sotw",
        "clients": count,
        "clusters": CLUSTERS,
        "endpoints": CLUSTERS * ENDPOINTS_PER_CLUSTER,
        "snapshot_build_s": round(build_seconds, 3),
        "initial_push_all_acked_s": round(initial, 3),
        "initial_push_cp_cpu_s": round(initial_cpu, 3),
        "one_endpoint_change_all_acked_s": round(one_change, 3),
        "one_endpoint_change_cp_cpu_s": round(one_change_cpu, 3),
        "one_endpoint_change_bytes_all_clients": change_bytes,
        "noop_set_changed": noop_changed,
        "noop_messages_sent": noop_sent,
        "cp_max_rss_mib": round(rss_mib, 1),
        "eds_response_bytes": server.stats.counters[("response_bytes", "ClusterLoadAssignment")],
    }


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    if len(sys.argv) > 1 and sys.argv[1] in ("--child", "--delta-child"):
        clients = _delta_clients if sys.argv[1] == "--delta-child" else _clients
        asyncio.run(clients(int(sys.argv[2]), int(sys.argv[3])))
        sys.exit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--delta", action="store_true", help="incremental xDS clients")
    args = parser.parse_args()
    result = asyncio.run(_main(args.clients, args.delta))
    print(json.dumps(result, indent=2))
