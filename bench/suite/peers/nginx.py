"""nginx with one worker as a reverse proxy (`proxy_pass` with upstream keep-alive), or as a TCP
proxy through the stream module (Debian's libnginx-mod-stream).

The realistic profile (suite/realistic.py): `access_log` to a file in the combined format plus
the request id, authority and upstream address (what Envoy's default format adds); `$request_id`
sent upstream as X-Request-ID; the routes as `map`s, one per route (a regex on the path, the
header, or both joined by `|`), and a last `map` that picks the first route that matched, in
order, else the catch-all; `proxy_pass` to that route's `upstream` block; `add_header` of the
route's name. nginx's locations are longest-prefix-then-regex, not first-match, and cannot test
headers, so maps are how nginx expresses Envoy's ordered header-and-regex routes.
"""

from __future__ import annotations

import re
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
from suite.realistic import ALL_ROUTES, CATCH_ALL, ROUTE_HEADER, ROUTES, HeaderCond, Route
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
        listen {host}:{port} backlog=4096{listen_tls};
{tls_lines}        keepalive_timeout {idle}s;
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


_REALISTIC_HTTP = """\
http {{
    # The combined format, plus what Envoy's default format logs besides.
    log_format bench '$remote_addr - $remote_user [$time_local] "$request" $status '
                     '$body_bytes_sent "$http_referer" "$http_user_agent" '
                     '"$request_id" "$http_host" "$upstream_addr" $request_time';
    access_log {dir}/access.log bench;
    tcp_nodelay on;
{temp_paths}
{maps}
{upstreams}
    server {{
        listen {host}:{port} backlog=4096;
        keepalive_timeout {idle}s;
        keepalive_requests 100000000;
        location / {{
            proxy_pass http://$route;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-ID $request_id;
            add_header {route_header} $route always;
        }}
    }}
}}
"""


def _header_variable(cond: HeaderCond) -> str:
    if cond.name == ":authority":
        return "$http_host"  # the Host header as sent ($host drops the port)
    return "$http_" + cond.name.replace("-", "_")


def _unanchored(pattern: str) -> str:
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return pattern[1:-1]


def _header_pattern(cond: HeaderCond) -> str:
    """The header condition as an unanchored regex over the header's value."""
    if cond.match == "regex":
        return _unanchored(cond.value)
    if cond.match == "present":
        return ".+"  # an absent header is "" in nginx
    literal = re.escape(cond.value)
    return literal if cond.match == "exact" else literal + ".*"


def _route_map(route: Route) -> str:
    """`map <source> $r_<name>`: the route's name when the request matches it, else ""."""
    variable = "$r_" + route.name.replace("-", "_")
    if route.path_regex is not None:
        path: str | None = _unanchored(route.path_regex)
    elif route.prefix != "/":
        path = re.escape(route.prefix or "") + ".*"
    else:
        path = None
    cond = route.header
    if cond is not None and path is not None:
        source, pattern = f"{_header_variable(cond)}|$uri", f"{_header_pattern(cond)}\\|{path}"
    elif cond is not None:
        source, pattern = _header_variable(cond), _header_pattern(cond)
    else:
        source, pattern = "$uri", path or ".*"
    if cond is not None and path is None and cond.match == "exact":
        # A plain string: a hash lookup, no regex (case-insensitive, where Envoy's exact is not).
        entry = f'"{cond.value}" {route.name};'
    elif cond is not None and path is None and cond.match == "present":
        entry = f'"" ""; default {route.name};'
        return f"    map {source} {variable} {{ {entry} }}"
    else:
        entry = f'"~^{pattern}$" {route.name};'
    return f'    map "{source}" {variable} {{ {entry} default ""; }}'


def realistic_maps() -> str:
    maps = [_route_map(route) for route in ROUTES]
    joined = ",".join("$r_" + route.name.replace("-", "_") for route in ROUTES)
    maps.append(
        "    # The first route that matched, in order (map regexes are tried in order).\n"
        f'    map "{joined}," $route {{\n'
        '        "~^,*(?<first>[^,]+)" $first;\n'
        f"        default {CATCH_ALL.name};\n"
        "    }"
    )
    return "\n".join(maps)


def realistic_upstreams(listener: Listener) -> str:
    return "\n".join(
        f"    upstream {route.name} {{\n"
        f"        server {listener.upstream_host}:{listener.upstream_port};\n"
        f"        keepalive {UPSTREAM_KEEPALIVE};\n"
        "        keepalive_requests 100000000;\n"
        f"        keepalive_timeout {IDLE_TIMEOUT_S}s;\n"
        "    }"
        for route in ALL_ROUTES
    )


def fd_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


class Nginx(Peer):
    name = "nginx"
    title = "nginx (1 worker, proxy_pass + keepalive)"
    modes: frozenset[Mode] = frozenset({"http", "tcp"})
    tls = True

    def _binary(self) -> str:
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def version(self) -> str:
        return command_version([self._binary(), "-v"])

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        directory = workdir / "nginx"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tmp").mkdir(exist_ok=True)
        is_tcp = listener.mode == "tcp"
        realistic = not is_tcp and listener.profile == "realistic"
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
            "listen_tls": " ssl" if listener.tls is not None else "",
            "tls_lines": (
                f"        ssl_certificate {listener.tls.cert};\n"
                f"        ssl_certificate_key {listener.tls.key};\n"
                "        ssl_protocols TLSv1.2 TLSv1.3;\n"
                if listener.tls is not None
                else ""
            ),
        }
        if realistic:
            values["maps"] = realistic_maps()
            values["upstreams"] = realistic_upstreams(listener)
            values["route_header"] = ROUTE_HEADER
            body = _REALISTIC_HTTP
        else:
            body = _STREAM if is_tcp else _HTTP
        text = _HEAD.format(**values) + body.format(**values)
        conf = directory / "nginx.conf"
        conf.write_text(text)
        return Launch(
            access_log=directory / "access.log" if realistic else None,
            argv=[
                self._binary(),
                "-p",
                str(directory),
                "-c",
                str(conf),
                "-e",
                str(directory / "error.log"),
            ],
        )
