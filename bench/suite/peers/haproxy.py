"""HAProxy with one thread, HTTP mode with keep-alive on both sides, or plain TCP mode."""

from __future__ import annotations

import shutil
from pathlib import Path

from suite.peers.base import (
    IDLE_TIMEOUT_S,
    Launch,
    Listener,
    Mode,
    Peer,
    command_version,
)

_CONF = """\
global
    nbthread 1
    maxconn {maxconn}
    # Warn instead of failing when the fd limit cannot be raised to 2 x maxconn (an unprivileged
    # container); the idle scenario needs one fd per client connection only.
    no strict-limits
    tune.bufsize 65536

defaults
    mode {mode}
    timeout connect 5s
    timeout client {idle}s
    timeout server {idle}s
    timeout http-keep-alive {idle}s
    maxconn {maxconn}
{http_options}
frontend bench
    bind {host}:{port}
    default_backend upstream

backend upstream
    server up {upstream_host}:{upstream_port}
"""

_HTTP_OPTIONS = """\
    option http-keep-alive
    http-reuse always
"""


class HAProxy(Peer):
    name = "haproxy"
    title = "HAProxy (nbthread 1)"
    modes: frozenset[Mode] = frozenset({"http", "tcp"})

    def _binary(self) -> str:
        return shutil.which("haproxy") or "/usr/sbin/haproxy"

    def version(self) -> str:
        return command_version([self._binary(), "-v"])

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        path = workdir / "haproxy.cfg"
        path.write_text(
            _CONF.format(
                maxconn=listener.max_connections,
                mode=listener.mode,
                idle=IDLE_TIMEOUT_S,
                http_options=_HTTP_OPTIONS if listener.mode == "http" else "",
                host=listener.host,
                port=listener.port,
                upstream_host=listener.upstream_host,
                upstream_port=listener.upstream_port,
            )
        )
        # -db: stay in the foreground, no master process.
        return Launch(argv=[self._binary(), "-db", "-f", str(path)])
