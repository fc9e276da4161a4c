"""HAProxy with one thread, HTTP mode with keep-alive on both sides, or plain TCP mode.

The realistic profile (suite/realistic.py) adds what an HAProxy user has on for the same job:
`option httplog` to a file, a `unique-id-format` UUID sent as X-Request-ID, the routes as ACLs
with `use_backend` (one backend per route) and `http-response set-header` in each backend.
HAProxy 2.6 cannot write a log file itself (its `log` targets are syslog servers, unix sockets,
rings, stdout and stderr): it logs to stdout (`log stdout format raw`, with -db) and the runner
points stdout at the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from suite.peers.base import (
    IDLE_TIMEOUT_S,
    Launch,
    Listener,
    Mode,
    Peer,
    TlsFiles,
    command_version,
)
from suite.realistic import (
    ALL_ROUTES,
    CATCH_ALL,
    REQUEST_ID_HEADER,
    ROUTE_HEADER,
    HeaderCond,
    Route,
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
    bind {host}:{port}{bind_tls}
    default_backend upstream

backend upstream
    server up {upstream_host}:{upstream_port}{server_tls}
"""

_HTTP_OPTIONS = """\
    option http-keep-alive
    http-reuse always
"""

_REALISTIC_CONF = """\
global
    nbthread 1
    maxconn {maxconn}
    no strict-limits
    tune.bufsize 65536
    # The access log: raw lines on stdout, which the runner sends to a file.
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client {idle}s
    timeout server {idle}s
    timeout http-keep-alive {idle}s
    maxconn {maxconn}
    option http-keep-alive
    http-reuse always

frontend bench
    bind {host}:{port}
    # An X-Request-ID (UUID4) for every request, as Envoy's generate_request_id.
    unique-id-format %[uuid()]
    unique-id-header {request_id_header}
    # httplog shows these in %hr as {{user-agent|host|request id}}: Envoy's default format logs
    # all three.
    capture request header User-Agent len 128
    capture request header Host len 64
    http-request capture unique-id len 36
{acls}
    default_backend {catch_all}
{backends}"""


def _server_tls(files: TlsFiles | None) -> str:
    """mTLS to the next hop: present the certificate, require the peer's, check its name."""
    if files is None:
        return ""
    return (
        f" ssl crt {files.combined} ca-file {files.cert} verify required"
        " sni str(localhost) verifyhost localhost"
    )


def _header_acl(acl: str, cond: HeaderCond) -> str:
    name = "host" if cond.name == ":authority" else cond.name
    if cond.match == "present":
        return f"    acl {acl} req.hdr({name}) -m found"
    # Single quotes: HAProxy's parser would otherwise eat the backslashes of a regex.
    flag = {"exact": "str", "prefix": "beg", "regex": "reg"}[cond.match]
    # `hdr()` splits values on commas; a user agent holds commas, so match the full line there.
    fetch = "req.fhdr" if name == "user-agent" else "hdr"
    return f"    acl {acl} {fetch}({name}) -m {flag} '{cond.value}'"


def _route_rules(route: Route) -> list[str]:
    acl = route.name.replace("-", "_")
    lines, conds = [], []
    if route.path_regex is not None:
        lines.append(f"    acl {acl}_path path_reg '{route.path_regex}'")
        conds.append(f"{acl}_path")
    elif route.prefix != "/":
        lines.append(f"    acl {acl}_path path_beg {route.prefix}")
        conds.append(f"{acl}_path")
    if route.header is not None:
        lines.append(_header_acl(f"{acl}_hdr", route.header))
        conds.append(f"{acl}_hdr")
    lines.append(f"    use_backend {route.name} if {' '.join(conds)}")
    return lines


def realistic_config(listener: Listener) -> str:
    acls = [line for route in ALL_ROUTES if route is not CATCH_ALL for line in _route_rules(route)]
    backends = [
        f"\nbackend {route.name}\n"
        f"    http-response set-header {ROUTE_HEADER} {route.name}\n"
        f"    server up {listener.upstream_host}:{listener.upstream_port}\n"
        for route in ALL_ROUTES
    ]
    return _REALISTIC_CONF.format(
        maxconn=listener.max_connections,
        idle=IDLE_TIMEOUT_S,
        host=listener.host,
        port=listener.port,
        request_id_header=REQUEST_ID_HEADER,
        acls="\n".join(acls),
        catch_all=CATCH_ALL.name,
        backends="".join(backends),
    )


class HAProxy(Peer):
    name = "haproxy"
    title = "HAProxy (nbthread 1)"
    modes: frozenset[Mode] = frozenset({"http", "tcp"})
    tls = True
    hop_mtls = True

    def _binary(self) -> str:
        return shutil.which("haproxy") or "/usr/sbin/haproxy"

    def version(self) -> str:
        return command_version([self._binary(), "-v"])

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        path = workdir / "haproxy.cfg"
        argv = [self._binary(), "-db", "-f", str(path)]
        if listener.mode == "http" and listener.profile == "realistic":
            path.write_text(realistic_config(listener))
            access_log = workdir / "access.log"
            return Launch(argv=argv, access_log=access_log, stdout=access_log)
        path.write_text(
            _CONF.format(
                maxconn=listener.max_connections,
                mode=listener.mode,
                idle=IDLE_TIMEOUT_S,
                http_options=_HTTP_OPTIONS if listener.mode == "http" else "",
                host=listener.host,
                port=listener.port,
                bind_tls=(
                    f" ssl crt {listener.tls.combined} alpn http/1.1"
                    + (
                        f" ca-file {listener.client_ca} verify required"
                        if listener.client_ca is not None
                        else ""
                    )
                    if listener.tls is not None
                    else ""
                ),
                upstream_host=listener.upstream_host,
                upstream_port=listener.upstream_port,
                server_tls=_server_tls(listener.upstream_tls),
            )
        )
        # -db: stay in the foreground, no master process.
        return Launch(argv=argv)
