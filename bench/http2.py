#!/usr/bin/env python3
"""HTTP/2 and gRPC through remora against HAProxy, nginx and Caddy, side by side in one run.

Rows (each peer on one pinned core, the load generator on the other, peers alternating per
round, medians with min..max over the rounds):

- `h2c-1k`: h2load over h2c (prior knowledge), 32 connections x 10 streams, 1 KiB responses,
  each peer bridging to an HTTP/1.1 upstream (nginx, keep-alive), as a sidecar in front of a
  plain web service does;
- `h2c-1k-h2-upstream`: the same, with HTTP/2 to the upstream too (nginx cannot proxy
  HTTP/2, so it sits out);
- `grpc-unary`: grpcio's asyncio client, 32 callers on one channel, small unary calls to a
  grpcio server, through remora and directly (the floor).

Latency percentiles come from h2load's per-request log (`--log-file`). Settings that favour
nobody: every peer runs one worker/thread, no access log, upstream keep-alive on. The upstream
is an untuned nginx (its default `keepalive_requests`, 1000).

    bench/http2.py                     # about 4 minutes
    bench/http2.py --duration 10 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PEERS = ("remora", "haproxy", "nginx", "caddy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@dataclass
class Proc:
    argv: list[str]
    cpu: int | None
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self, log: Path) -> None:
        argv = (["taskset", "-c", str(self.cpu)] if self.cpu is not None else []) + self.argv
        out = log.open("wb")
        self.popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


# -- the upstream ---------------------------------------------------------------------------------
def upstream_nginx(work: Path, port: int, http2: bool) -> list[str]:
    www = work / "www"
    www.mkdir(exist_ok=True)
    (www / "1k").write_bytes(b"x" * 1024)
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    conf = work / f"upstream-{port}.conf"
    conf.write_text(
        f"""user root; worker_processes 1; daemon off; pid {work}/up-{port}.pid;
error_log {work}/up-{port}.err error;
events {{ worker_connections 10000; }}
http {{
  access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};
  fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}{" http2" if http2 else ""}; root {www}; }}
}}
"""
    )
    return ["nginx", "-c", str(conf)]


# -- the peers, h2c in front ----------------------------------------------------------------------
def remora_argv(work: Path, port: int, up: int, h2_up: bool) -> list[str]:
    cluster: dict[str, object] = {
        "name": "up",
        "type": "STATIC",
        "connect_timeout": "1s",
        "circuit_breakers": {
            "thresholds": [{"max_connections": 4096, "max_pending_requests": 4096,
                            "max_requests": 4096}]
        },
        "load_assignment": {"cluster_name": "up", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                          "port_value": up}}}}]}]},
    }  # fmt: skip
    if h2_up:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                "HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "up"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }  # fmt: skip
    config = {"static_resources": {
        "listeners": [{"name": "h2", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}],
        "clusters": [cluster]}}  # fmt: skip
    path = work / f"remora-{port}.json"
    path.write_text(json.dumps(config))
    return [PYTHON, "-m", "remora", "proxy", "--config", str(path), "--disable-hot-restart",
            "--log-level", "error"]  # fmt: skip


def haproxy_argv(work: Path, port: int, up: int, h2_up: bool) -> list[str]:
    conf = work / f"haproxy-{port}.cfg"
    conf.write_text(
        f"""global
  nbthread 1
  maxconn 5000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  http-reuse always
frontend f
  bind 127.0.0.1:{port} proto h2
  default_backend b
backend b
  server up 127.0.0.1:{up}{" proto h2" if h2_up else ""}
"""
    )
    return ["haproxy", "-db", "-f", str(conf)]


def nginx_argv(work: Path, port: int, up: int, h2_up: bool) -> list[str]:
    assert not h2_up
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    conf = work / f"nginx-{port}.conf"
    conf.write_text(
        f"""user root; worker_processes 1; daemon off; pid {work}/ngx-{port}.pid;
error_log {work}/ngx-{port}.err error;
events {{ worker_connections 10000; }}
http {{
  access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};
  fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  upstream up {{ server 127.0.0.1:{up}; keepalive 128; }}
  # nginx ends a client's HTTP/2 connection after 1,000 requests by default, which h2load's
  # timed runs do not survive (they do not reconnect); the others have no such limit.
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} http2;
    location / {{ proxy_pass http://up; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}
  }}
}}
"""
    )
    return ["nginx", "-c", str(conf)]


def caddy_argv(work: Path, port: int, up: int, h2_up: bool) -> list[str]:
    transport: dict[str, object] = {"protocol": "http", "keep_alive": {
        "enabled": True, "max_idle_conns_per_host": 128}}  # fmt: skip
    if h2_up:
        transport["versions"] = ["h2c"]
    config = {
        "admin": {"disabled": True},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "apps": {"http": {"servers": {"s": {
            "listen": [f"127.0.0.1:{port}"],
            "protocols": ["h1", "h2", "h2c"],
            "automatic_https": {"disable": True},
            "routes": [{"handle": [{"handler": "reverse_proxy",
                                    "upstreams": [{"dial": f"127.0.0.1:{up}"}],
                                    "transport": transport}]}],
        }}}},
    }  # fmt: skip
    path = work / f"caddy-{port}.json"
    path.write_text(json.dumps(config))
    return ["caddy", "run", "--config", str(path)]


LAUNCHERS: dict[str, Callable[[Path, int, int, bool], list[str]]] = {
    "remora": remora_argv,
    "haproxy": haproxy_argv,
    "nginx": nginx_argv,
    "caddy": caddy_argv,
}


# -- load ----------------------------------------------------------------------------------------
@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int


def h2load(port: int, duration: int, cpu: int | None, log: Path) -> Result:
    argv = ["h2load", "-c", "32", "-m", "10", "-t", "1", "-D", str(duration),
            "--warm-up-time", "1", f"--log-file={log}", f"http://127.0.0.1:{port}/1k"]  # fmt: skip
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    out = done.stdout
    rps = 0.0
    failed = -1
    for line in out.splitlines():
        if line.startswith("finished in"):
            rps = float(line.split(",")[1].split()[0])
        if line.startswith("requests:"):
            # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            parts = [p.strip() for p in line.split(":", 1)[1].split(",")]
            failed = int(parts[4].split()[0]) + int(parts[5].split()[0])
    latencies = sorted(int(row.split("\t")[2]) for row in log.read_text().splitlines() if row)
    log.unlink()
    if not latencies:
        raise RuntimeError(f"h2load produced no requests:\n{out}\n{done.stderr}")
    return Result(
        rps,
        latencies[len(latencies) // 2] / 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000,
        failed,
    )


async def grpc_qps(target: str, duration: float) -> float:
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/bench.Echo/Unary")
        for _ in range(50):
            await call(b"warm")
        stop = time.monotonic() + duration
        count = 0

        async def caller() -> None:
            nonlocal count
            while time.monotonic() < stop:
                await call(b"x" * 64)
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(32)))
        return count / (time.monotonic() - started)


def grpc_server_argv(port: int) -> list[str]:
    code = f"""
import asyncio, grpc
async def unary(request, context):
    return request
async def main():
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {{"Unary": grpc.unary_unary_rpc_method_handler(unary)}}),))
    server.add_insecure_port("127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""
    return [PYTHON, "-c", code]


# -- the run -------------------------------------------------------------------------------------
def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}..{max(values):,.0f})"


def spread_f(values: list[float], digits: int = 2) -> str:
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per row")
    parser.add_argument("--only", action="append", choices=PEERS, help="peers to run")
    parser.add_argument("--no-grpc", action="store_true", help="skip the gRPC row")
    args = parser.parse_args()
    peers = tuple(args.only or PEERS)
    missing = [tool for tool in ("h2load", "taskset", "nginx") if shutil.which(tool) is None]
    missing += [p for p in peers if p != "remora" and shutil.which(p) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (make apt installs them)", file=sys.stderr)
        return 2
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (None, None)
    work = Path(tempfile.mkdtemp(prefix="remora-h2-bench-"))
    logs = work / "logs"
    logs.mkdir()
    up1, up2 = free_port(), free_port()
    upstreams = [Proc(upstream_nginx(work, up1, False), load_cpu),
                 Proc(upstream_nginx(work, up2, True), load_cpu)]  # fmt: skip
    results: dict[str, dict[str, list[Result]]] = {}
    try:
        for index, proc in enumerate(upstreams):
            proc.start(logs / f"upstream{index}.log")
        wait_port(up1)
        wait_port(up2)
        rows = [("h2c-1k", up1, False), ("h2c-1k-h2-upstream", up2, True)]
        for row, up, h2_up in rows:
            results[row] = {}
            for round_index in range(args.rounds):
                for peer in peers:
                    if peer == "nginx" and h2_up:
                        continue
                    port = free_port()
                    proc = Proc(LAUNCHERS[peer](work, port, up, h2_up), proxy_cpu)
                    proc.start(logs / f"{row}-{peer}-{round_index}.log")
                    try:
                        wait_port(port)
                        result = h2load(port, args.duration, load_cpu, work / "h2load.log")
                    finally:
                        proc.stop()
                    results[row].setdefault(peer, []).append(result)
                    line = (
                        f"{row} round {round_index + 1} {peer}: {result.rps:,.0f} req/s, "
                        f"P99 {result.p99_ms:.2f} ms, failed {result.failed}"
                    )
                    print(line, flush=True)
        grpc_rows: dict[str, list[float]] = {}
        if not args.no_grpc:
            gport = free_port()
            server = Proc(grpc_server_argv(gport), load_cpu)
            server.start(logs / "grpc-server.log")
            try:
                wait_port(gport)
                for round_index in range(args.rounds):
                    port = free_port()
                    proc = Proc(remora_argv(work, port, gport, True), proxy_cpu)
                    proc.start(logs / f"grpc-remora-{round_index}.log")
                    try:
                        wait_port(port)
                        via = asyncio.run(grpc_qps(f"127.0.0.1:{port}", args.duration))
                    finally:
                        proc.stop()
                    direct = asyncio.run(grpc_qps(f"127.0.0.1:{gport}", args.duration))
                    grpc_rows.setdefault("remora", []).append(via)
                    grpc_rows.setdefault("direct", []).append(direct)
                    print(f"grpc round {round_index + 1}: remora {via:,.0f}/s, "
                          f"direct {direct:,.0f}/s", flush=True)  # fmt: skip
            finally:
                server.stop()
    finally:
        for proc in upstreams:
            proc.stop()
    print()
    for row, by_peer in results.items():
        print(f"### {row}\n")
        print("| peer | req/s | P50 ms | P99 ms | req/s ratio to HAProxy | P99 ratio to HAProxy |")
        print("|---|---|---|---|---|---|")
        base = by_peer.get("haproxy")
        for peer, runs in by_peer.items():
            ratio = p99_ratio = "-"
            if base is not None and peer != "haproxy":
                ratio = spread_f([r.rps / b.rps for r, b in zip(runs, base, strict=True)])
                p99_ratio = spread_f([r.p99_ms / b.p99_ms for r, b in zip(runs, base, strict=True)])
            print(f"| {peer} | {spread([r.rps for r in runs])} | "
                  f"{spread_f([r.p50_ms for r in runs])} | {spread_f([r.p99_ms for r in runs])} | "
                  f"{ratio} | {p99_ratio} |")  # fmt: skip
        failures = sum(r.failed for runs in by_peer.values() for r in runs)
        print(f"\nfailed or errored requests: {failures}\n")
    if grpc_rows:
        via, direct = grpc_rows["remora"], grpc_rows["direct"]
        print("### grpc-unary\n")
        print("| path | calls/s | ratio to direct |\n|---|---|---|")
        print(f"| direct | {spread(direct)} | - |")
        ratios = [v / d for v, d in zip(via, direct, strict=True)]
        print(f"| remora | {spread(via)} | {spread_f(ratios)} |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
