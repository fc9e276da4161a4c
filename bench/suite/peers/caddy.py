"""Caddy's `reverse_proxy` with GOMAXPROCS=1, from a JSON config (admin API and TLS off).

Caddy has no TCP proxy without the third-party layer4 plugin, which Debian's build lacks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from suite.peers.base import (
    IDLE_TIMEOUT_S,
    UPSTREAM_KEEPALIVE,
    Launch,
    Listener,
    Mode,
    Peer,
    command_version,
)


def config(listener: Listener) -> dict[str, Any]:
    idle = f"{IDLE_TIMEOUT_S}s"
    upstream = f"{listener.upstream_host}:{listener.upstream_port}"
    proxy = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": upstream}],
        "transport": {
            "protocol": "http",
            "keep_alive": {
                "enabled": True,
                "max_idle_conns_per_host": UPSTREAM_KEEPALIVE,
                "idle_timeout": idle,
            },
        },
    }
    return {
        "admin": {"disabled": True},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "apps": {
            "http": {
                "servers": {
                    "bench": {
                        "listen": [f"{listener.host}:{listener.port}"],
                        "idle_timeout": idle,
                        "automatic_https": {"disable": True},
                        "routes": [{"handle": [proxy]}],
                    }
                }
            }
        },
    }


class Caddy(Peer):
    name = "caddy"
    title = "Caddy (reverse_proxy, GOMAXPROCS=1)"
    modes: frozenset[Mode] = frozenset({"http"})
    unsupported_reason = "no TCP proxy in Debian's Caddy (needs the layer4 plugin)"

    def _binary(self) -> str:
        return shutil.which("caddy") or "/usr/bin/caddy"

    def version(self) -> str:
        return "Caddy " + command_version([self._binary(), "version"])

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        directory = workdir / "caddy"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "caddy.json"
        path.write_text(json.dumps(config(listener), indent=2))
        env = {
            "GOMAXPROCS": "1",
            "HOME": str(directory),
            "XDG_CONFIG_HOME": str(directory / "config"),
            "XDG_DATA_HOME": str(directory / "data"),
        }
        return Launch(argv=[self._binary(), "run", "--config", str(path)], env=env)
