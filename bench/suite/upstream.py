"""The upstream every peer proxies to: its own nginx instance serving fixed bodies from files.

nginx is fast enough that it is never the bottleneck for one proxy core, and it is the same for
every peer, so differences between peers are the proxies' own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from suite import probe
from suite.ports import free_port
from suite.procs import Managed

# Body name -> size in bytes. Scenarios refer to these by URL path ("/1k").
BODIES = {"1k": 1024, "64k": 64 * 1024, "1m": 1024 * 1024}

_CONF = """\
user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
worker_rlimit_nofile 200000;
events {{ worker_connections 60000; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    open_file_cache max=16 inactive=600s;
    default_type application/octet-stream;
{temp_paths}
    server {{
        listen {host}:{port} backlog=4096;
        root {dir}/www;
        location / {{ }}
    }}
}}
"""


def temp_paths_block(directory: Path) -> str:
    """nginx's default temp dirs live under /var/lib/nginx; keep every instance self-contained."""
    return "\n".join(
        f"    {kind}_temp_path {directory}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


class Upstream:
    def __init__(self, workdir: Path, cpu: int | None, host: str = "127.0.0.1") -> None:
        self.dir = workdir / "upstream"
        self.host = host
        self.port = free_port(host)
        self.cpu = cpu
        self.proc: Managed | None = None

    def start(self) -> None:
        www = self.dir / "www"
        www.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        pattern = bytes(range(33, 127))
        for name, size in BODIES.items():
            data = (pattern * (size // len(pattern) + 1))[:size]
            (www / name).write_bytes(data)
        conf = self.dir / "nginx.conf"
        conf.write_text(
            _CONF.format(
                dir=self.dir, host=self.host, port=self.port, temp_paths=temp_paths_block(self.dir)
            )
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = Managed(
            "upstream-nginx",
            [nginx, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            self.dir / "stdout.log",
            self.cpu,
        )
        probe.wait_ready(self.proc, self.host, self.port, "/1k", BODIES["1k"])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
