"""`remora demo`: a working mesh on localhost with one command (what `make run` runs)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from remora.proxy.cli import add_log_level, settle_heap, setup_logging

_DEMO_NAMES = ("demo-a", "demo-b")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a local demo: two upstreams behind the proxy, with the admin API",
        description=(
            "Start two demo upstreams, the proxy on 127.0.0.1:10000 (HTTP) and :10001 (TCP), "
            "and the admin on 127.0.0.1:9901. Ctrl-C stops everything."
        ),
    )
    parser.add_argument("--http-port", type=int, default=10000)
    parser.add_argument("--tcp-port", type=int, default=10001)
    parser.add_argument("--admin-port", type=int, default=9901)
    parser.add_argument(
        "--print-config", action="store_true", help="print the demo's Envoy bootstrap and exit"
    )
    add_log_level(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from remora.demo.mesh import demo_bootstrap

    if args.print_config:
        config = demo_bootstrap([18081, 18082], args.http_port, args.tcp_port, args.admin_port)
        print(json.dumps(config, indent=2))
        return 0
    setup_logging(args.log_level)
    import uvloop

    try:
        uvloop.run(_main(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _main(args: argparse.Namespace) -> None:
    from remora.config.bootstrap import parse_dict
    from remora.config.compile import compile_bootstrap
    from remora.demo.mesh import demo_bootstrap
    from remora.demo.upstream import DemoUpstream
    from remora.proxy.server import ProxyServer

    upstreams = [DemoUpstream(name=name, host="127.0.0.1", port=0) for name in _DEMO_NAMES]
    for upstream in upstreams:
        await upstream.start()
    try:
        bootstrap = demo_bootstrap(
            [u.port for u in upstreams], args.http_port, args.tcp_port, args.admin_port
        )
        server = ProxyServer(compile_bootstrap(parse_dict(bootstrap)))
        await server.start()
        settle_heap()
        http, admin = args.http_port, args.admin_port
        backends = ", ".join(
            f"{name} (127.0.0.1:{u.port})" for name, u in zip(_DEMO_NAMES, upstreams, strict=True)
        )
        print(
            f"""
remora demo is up:
  proxy  http://127.0.0.1:{http}  ->  {backends}
  tcp    127.0.0.1:{args.tcp_port} (tcp_proxy to the same upstreams)
  admin  http://127.0.0.1:{admin}

Try:
  curl -s http://127.0.0.1:{http}/hello      # twice: round robin, demo-a then demo-b
  curl -si http://127.0.0.1:{http}/old/page        # a redirect route
  curl -s http://127.0.0.1:{http}/healthz          # a direct_response route
  curl -s -d 'hi there' http://127.0.0.1:{http}/echo
  curl -s http://127.0.0.1:{admin}/stats | grep upstream_rq_2xx
  curl -s http://127.0.0.1:{admin}/clusters
  curl -s http://127.0.0.1:{admin}/stats/prometheus | head

Press Ctrl-C to stop.
""",
            flush=True,
        )
        await server.serve_forever()
    finally:
        for upstream in upstreams:
            await upstream.close()
        await asyncio.sleep(0)
