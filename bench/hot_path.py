"""The Python cost of one proxied request, without the kernel's: the real compiled config and
protocol objects, fed bytes through in-memory transports (no sockets, so no noise from the
network stack or the load generator). Usage: .venv/bin/python bench/hot_path.py [N] [-v]

Prints µs of CPU per request (median of 5 rounds of N). Compare trees with PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

import uvloop

from remora.proxy.cli import load
from remora.proxy.server import ProxyServer
from remora.proxy.upstream.h1_connection import UpstreamConnection

BODY = bytes(range(33, 127)) * 11
BODY = BODY[:1024]
REQ = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n"
RESP = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 07 Dec 2026 06:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n"
    b"Last-Modified: Mon, 07 Dec 2026 05:50:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "6574a0e8-400"\r\nAccept-Ranges: bytes\r\n\r\n' + BODY
)


class Transport:
    def __init__(self) -> None:
        self.writes = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data

    def writelines(self, data) -> None:
        self.write(b"".join(data))

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def main(path: str, n: int) -> None:
    config = load(path)
    server = ProxyServer(config)
    await server.start()
    listener = server.listeners[0].runtime
    cluster = server.clusters["up"]
    host = cluster.pick(None)
    up = UpstreamConnection(host.pool)
    ut = Transport()
    up.connection_made(ut)
    host.pool.connections.add(up)
    host.pool.release(up)
    down = listener.protocol_factory()
    dt = Transport()
    down.connection_made(dt)
    for _ in range(2000):
        down.data_received(REQ)
        up.data_received(RESP)
    await asyncio.sleep(0)
    assert dt.writes == 2000 and dt.last.endswith(BODY), (dt.writes, dt.last[:300])
    best = []
    for _round in range(5):
        c0 = time.process_time()
        for i in range(n):
            down.data_received(REQ)
            up.data_received(RESP)
            if i & 15 == 0:
                await asyncio.sleep(0)
        c1 = time.process_time()
        best.append((c1 - c0) / n * 1e6)
    best.sort()
    print(f"µs/request: median {best[2]:.2f} (min {best[0]:.2f} max {best[-1]:.2f})")
    if "-v" in sys.argv:
        print(dt.last[:400].decode("latin-1"))
        print(ut.last.decode("latin-1"))
    await server.close()


CONFIG = """\
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 19911}}
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 18090}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": "type.googleapis.com/envoy.extensions.filters.network.\
http_connection_manager.v3.HttpConnectionManager"
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: up}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18081}}}
"""

if __name__ == "__main__":
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(CONFIG)
        f.flush()
        count = next((int(a) for a in sys.argv[1:] if a.isdigit()), 50000)
        uvloop.install()
        asyncio.run(main(f.name, count))
