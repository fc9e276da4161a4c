"""nginx with one worker as a reverse proxy (`proxy_pass` with upstream keep-alive), or as a TCP
proxy through the stream module (Debian's libnginx-mod-stream)."""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

from suite.peers.base import (
    IDLE_TIMEOUT_S,
    UPSTREAM_KEEPALIVE,
    Launch,
    Listener,
    Mode,
    Peer,
    command_version,
)
from suite.upstream import temp_paths_block

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")

_HEAD = """\
{load_module}user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
worker_rlimit_nofile {nofile};
events {{ worker_connections {maxconn}; }}
"""

_HTTP = """\
http {{
    access_log off;
    tcp_nodelay on;
{temp_paths}
    upstream upstream {{
        server {upstream_host}:{upstream_port};
        keepalive {keepalive};
        keepalive_requests 100000000;
        keepalive_timeout {idle}s;
    }}
    server {{
        listen {host}:{port} backlog=4096;
        keepalive_timeout {idle}s;
        keepalive_requests 100000000;
        location / {{
            proxy_pass http://upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

_STREAM = """\
stream {{
    server {{
        listen {host}:{port} backlog=4096;
        proxy_pass {upstream_host}:{upstream_port};
        proxy_timeout {idle}s;
    }}
}}
"""


def fd_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


class Nginx(Peer):
    name = "nginx"
    title = "nginx (1 worker, proxy_pass + keepalive)"
    modes: frozenset[Mode] = frozenset({"http", "tcp"})

    def _binary(self) -> str:
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def version(self) -> str:
        return command_version([self._binary(), "-v"])

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        directory = workdir / "nginx"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tmp").mkdir(exist_ok=True)
        is_tcp = listener.mode == "tcp"
        values = {
            "dir": directory,
            "nofile": min(listener.max_connections * 2, fd_hard_limit()),
            "maxconn": listener.max_connections,
            "keepalive": UPSTREAM_KEEPALIVE,
            "idle": IDLE_TIMEOUT_S,
            "host": listener.host,
            "port": listener.port,
            "upstream_host": listener.upstream_host,
            "upstream_port": listener.upstream_port,
            "temp_paths": temp_paths_block(directory),
            "load_module": f"load_module {STREAM_MODULE};\n" if is_tcp else "",
        }
        text = _HEAD.format(**values) + (_STREAM if is_tcp else _HTTP).format(**values)
        conf = directory / "nginx.conf"
        conf.write_text(text)
        return Launch(
            argv=[
                self._binary(),
                "-p",
                str(directory),
                "-c",
                str(conf),
                "-e",
                str(directory / "error.log"),
            ]
        )
