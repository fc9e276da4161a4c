"""The upstream every peer proxies to: its own nginx instance serving fixed bodies from files.

nginx is fast enough that it is never the bottleneck for one proxy core, and it is the same for
every peer, so differences between peers are the proxies' own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from suite import probe
from suite.ports import free_port
from suite.procs import Managed
from suite.realistic import ECHO_HEADER

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
{keepalive_requests}
    open_file_cache max=16 inactive=600s;
    default_type application/octet-stream;
{temp_paths}
    server {{
        listen {host}:{port} backlog=4096;
        root {dir}/www;
        location / {{ {echo} }}
    }}
}}
"""


def temp_paths_block(directory: Path) -> str:
    """nginx's default temp dirs live under /var/lib/nginx; keep every instance self-contained."""
    return "\n".join(
        f"    {kind}_temp_path {directory}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


@dataclass(frozen=True)
class UpstreamSpec:
    """How a scenario's upstream behaves towards the proxies' keep-alive connections."""

    #: Requests nginx serves on one connection before it closes it; None leaves the directive out,
    #: i.e. nginx's default (1000 since 1.19.10), so a proxy must reconnect every 1000 requests.
    keepalive_requests: int | None = 100_000_000
    #: Echo the received x-request-id back in a response header (ECHO_HEADER), for the probe.
    echo_request_id: bool = False

    @property
    def label(self) -> str:
        if self.keepalive_requests is None:
            kept = "nginx's default keepalive_requests (1000)"
        else:
            kept = f"keepalive_requests {self.keepalive_requests:,}"
        return kept + (", echoes x-request-id" if self.echo_request_id else "")


#: The upstream of most rows: a connection is never closed by the upstream during a run.
DEFAULT_SPEC = UpstreamSpec()
#: The realistic row's upstream: nginx as shipped, so proxies reconnect every 1000 requests.
REALISTIC_SPEC = UpstreamSpec(keepalive_requests=None, echo_request_id=True)


def render_conf(directory: Path, host: str, port: int, spec: UpstreamSpec) -> str:
    keepalive = spec.keepalive_requests
    return _CONF.format(
        dir=directory,
        host=host,
        port=port,
        temp_paths=temp_paths_block(directory),
        keepalive_requests=(
            f"    keepalive_requests {keepalive};"
            if keepalive is not None
            else "    # keepalive_requests: nginx's default (1000)"
        ),
        echo=f"add_header {ECHO_HEADER} $http_x_request_id;" if spec.echo_request_id else "",
    )


class Upstream:
    def __init__(
        self,
        workdir: Path,
        cpu: int | None,
        host: str = "127.0.0.1",
        spec: UpstreamSpec = DEFAULT_SPEC,
        name: str = "upstream",
    ) -> None:
        self.dir = workdir / name
        self.spec = spec
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
        conf.write_text(render_conf(self.dir, self.host, self.port, self.spec))
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
