"""What `remora proxy --bpf-telemetry` costs: wrk through the proxy with it off and on.

The two rows are keep-alive (32 connections; telemetry reports only when a connection closes,
so it has almost nothing to do) and a new connection per request (every request's
connection reports, so the proxy also charges one event per request to its stats). Both
modes run the proxy in the same fresh cgroup. The runs alternate off, on, off, on... so slow
drift on this shared machine hits both alike. Each figure is the median of the rounds, with
min..max, and the ratio is on/off per round.

    sudo .venv/bin/python bench/telemetry.py [--rounds 3] [--duration 5]

The upstream is nginx serving a 1 KiB body, as in the main suite. Nothing is tuned for remora:
one process, the default config, and no CPU pinning.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CGROUP2 = Path("/sys/fs/cgroup/unified")
NGINX = """
daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "{body}"; }} }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proxy_config(listen: int, admin: int, upstream: int) -> dict[str, object]:
    ext = "type.googleapis.com/envoy.extensions"
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": f"{ext}.filters.network.http_connection_manager"
                                        ".v3.HttpConnectionManager",
                                        "stat_prefix": "bench",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "upstream"},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": f"{ext}.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": upstream,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def wait_ready(admin: int) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the proxy never became ready")


def wrk(port: int, seconds: float, close: bool) -> float:
    args = ["wrk", "-t1", "-c32", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk said: {out}")
    return float(found.group(1))


def run_round(config: Path, cgroup: Path, telemetry: bool, listen: int, admin: int,
              seconds: float) -> dict[str, float]:  # fmt: skip
    argv = [sys.executable, "-m", "remora", "proxy", "-c", str(config), "--disable-hot-restart"]
    if telemetry:
        argv += ["--bpf-telemetry", str(cgroup)]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())),
    )
    try:
        wait_ready(admin)
        wrk(listen, 1, False)  # warm-up
        return {"keepalive": wrk(listen, seconds, False), "newconn": wrk(listen, seconds, True)}
    finally:
        proc.terminate()
        proc.wait(30)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}..{max(values):,.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        print("needs wrk and nginx (make apt)", file=sys.stderr)
        return 2
    subprocess.run([sys.executable, "-m", "remora.accel.build"], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    cgroup = CGROUP2 / f"remora-bench-telemetry-{os.getpid()}"
    cgroup.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        upstream, listen, admin = free_port(), free_port(), free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX.format(dir=tmp, port=upstream, body="x" * 1024))
        nginx = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
        config = Path(tmp) / "proxy.json"
        config.write_text(json.dumps(proxy_config(listen, admin, upstream)))
        results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        try:
            time.sleep(0.3)
            for _ in range(args.rounds):
                for telemetry in (False, True):
                    results[telemetry].append(
                        run_round(config, cgroup, telemetry, listen, admin, args.duration)
                    )
        finally:
            nginx.terminate()
            nginx.wait(10)
            for _ in range(50):
                try:
                    cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
    print("| row | telemetry off, req/s | telemetry on, req/s | on/off per round |")
    print("| --- | ---: | ---: | ---: |")
    for row in ("keepalive", "newconn"):
        off = [r[row] for r in results[False]]
        on = [r[row] for r in results[True]]
        ratios = [b / a for a, b in zip(off, on, strict=True)]
        print(
            f"| {row} | {summary(off)} | {summary(on)} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.3f}..{max(ratios):.3f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
