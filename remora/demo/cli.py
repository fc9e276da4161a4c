"""`remora demo`: a working mesh on localhost with one command (what `make run` runs)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from remora.argtypes import port, port_list
from remora.proxy.cli import add_log_level, settle_heap, setup_logging

_DEMO_NAMES = ("demo-a", "demo-b")


_EXAMPLES = """\
examples:
  remora demo                                  # what `make run` runs
  remora demo --http-port 8080 --admin-port 8081
  remora demo --print-config > demo.json && remora proxy -c demo.json --validate
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a local demo: two upstreams behind the proxy, with the admin API",
        description=(
            "Start two demo upstreams, the proxy on 127.0.0.1:10000 (HTTP) and :10001 (TCP), "
            "and the admin on 127.0.0.1:9901. Ctrl-C stops everything."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--http-port", type=port, default=10000, metavar="PORT",
                        help="the proxy's HTTP listener (default: 10000)")  # fmt: skip
    parser.add_argument("--tcp-port", type=port, default=10001, metavar="PORT",
                        help="the proxy's tcp_proxy listener (default: 10001)")  # fmt: skip
    parser.add_argument("--admin-port", type=port, default=9901, metavar="PORT",
                        help="the admin API (default: 9901)")  # fmt: skip
    parser.add_argument(
        "--upstream-ports",
        type=port_list,
        default=[18081, 18082],
        metavar="PORT,PORT",
        help="the two demo upstreams, demo-a and demo-b (default: 18081,18082; 0 picks free ones)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the demo's Envoy bootstrap (the one it runs) and exit",
    )
    add_log_level(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from remora.demo.mesh import demo_bootstrap

    if len(args.upstream_ports) != len(_DEMO_NAMES):
        print("error: --upstream-ports takes two ports, e.g. 18081,18082", file=sys.stderr)
        return 2
    if args.print_config:
        config = demo_bootstrap(args.upstream_ports, args.http_port, args.tcp_port, args.admin_port)
        print(json.dumps(config, indent=2))
        return 0
    setup_logging(args.log_level)
    import uvloop

    from remora.config.errors import ConfigErrors

    try:
        uvloop.run(_main(args))
    except KeyboardInterrupt:
        pass
    except ConfigErrors as exc:  # ports that collide, say
        print("error: the demo's configuration is invalid with these options:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # stdout's reader went away: remora.cli exits quietly
        raise
    except OSError as exc:
        print(f"error: {exc.strerror if exc.errno and exc.strerror else exc}", file=sys.stderr)
        return 1
    return 0


async def _main(args: argparse.Namespace) -> None:
    from remora.config.bootstrap import parse_dict
    from remora.config.compile import compile_bootstrap
    from remora.demo.mesh import demo_bootstrap
    from remora.demo.upstream import DemoUpstream
    from remora.proxy.server import ProxyServer

    upstreams = [
        DemoUpstream(name=name, host="127.0.0.1", port=upstream_port)
        for name, upstream_port in zip(_DEMO_NAMES, args.upstream_ports, strict=True)
    ]
    try:
        for upstream in upstreams:
            try:
                await upstream.start()
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise OSError(
                    f"demo upstream {upstream.name} (--upstream-ports) cannot bind "
                    f"127.0.0.1:{upstream.port}: {reason}"
                ) from None
        bootstrap = demo_bootstrap(
            [u.port for u in upstreams], args.http_port, args.tcp_port, args.admin_port
        )
        server = ProxyServer(compile_bootstrap(parse_dict(bootstrap)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # drain, not die, from the first bind on
            loop.add_signal_handler(sig, server.request_shutdown, sig.name)
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
