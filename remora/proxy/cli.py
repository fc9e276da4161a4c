"""`remora proxy`: run or validate an Envoy v3 bootstrap."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from remora.config.errors import ConfigErrors

if TYPE_CHECKING:
    from remora.proxy.workers import WorkerLink

_DESCRIPTION = """\
Run the proxy from an Envoy v3 bootstrap, or validate it with --validate.

SIGTERM, SIGINT and the admin's POST /quitquitquit drain: listeners close, open
requests finish within the drain timeout, then the process exits 0.

SIGHUP reloads the file (so does every change to it, with --watch). Static
listeners and clusters that were added, removed or changed are applied without
dropping a connection. An invalid file is logged with every error, and the
running config keeps serving. The admin address, dynamic_resources and node
need a restart: a reload logs that and applies the rest.
"""

_EXAMPLES = """\
examples:
  remora proxy -c examples/front-proxy.yaml
  remora proxy -c examples/front-proxy.yaml --validate
  remora proxy -c examples/front-proxy.yaml --watch     # or: kill -HUP <pid> after an edit
  remora demo --print-config > demo.json && remora proxy -c demo.json -l debug
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "proxy",
        help="run the proxy from an Envoy v3 bootstrap (YAML or JSON)",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", "-c", required=True, metavar="FILE",
        help="the Envoy v3 bootstrap, YAML or JSON (static_resources and/or dynamic_resources)",
    )  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--validate",
        action="store_true",
        help="check the config like `envoy --mode validate`: exit 0, or 1 listing every error",
    )
    mode.add_argument(
        "--watch",
        action="store_true",
        help="reload the config whenever the file changes, as on SIGHUP (a running proxy only)",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency,
        default=1,
        metavar="N",
        help="worker processes sharing the listeners through SO_REUSEPORT, with one admin that "
        "sums their stats (default 1: a single process)",
    )
    add_log_level(parser)
    parser.set_defaults(handler=run)


def _concurrency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be 1 to 256, got {value}")
    return value


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        "-l",
        default="info",
        choices=["trace", "debug", "info", "warning", "warn", "error", "critical", "off"],
        help="log level (default: info; trace is debug)",
    )


def setup_logging(level: str) -> None:
    mapping = {"trace": logging.DEBUG, "warn": logging.WARNING, "off": logging.CRITICAL + 10}
    logging.basicConfig(
        level=mapping.get(level, getattr(logging, level.upper(), logging.INFO)),
        format="[%(asctime)s][%(levelname)s][%(name)s] %(message)s",
        stream=sys.stderr,
    )


def load(path: str) -> Any:
    """Parse and compile a bootstrap; raises ConfigErrors."""
    from remora.config.bootstrap import load_file_lenient
    from remora.config.compile import compile_bootstrap

    return compile_bootstrap(*load_file_lenient(path))


def settle_heap() -> None:
    """Move everything built at start-up (protobuf descriptors, compiled config, modules) out of
    the garbage collector's reach.

    The data path makes no reference cycles per request, but the collector still runs as objects
    are allocated, and a full collection over the start-up heap took 11-14 ms here: a latency
    spike for every request in flight. Frozen objects are never scanned again.
    """
    gc.collect()
    gc.freeze()


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    if not args.validate:
        # Before the loop takes SIGHUP over: the file is about to be read, so a signal saying it
        # changed needs nothing more, and must not end the process (the default).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        config = load(args.config)
    except ConfigErrors as exc:
        heading, *rest = exc.listing(args.config)
        print(f"error: {heading}", *rest, sep="\n", file=sys.stderr)
        return 1
    for warning in config.warnings:
        logging.getLogger("remora.config").warning("%s", warning)
    if not config.listeners and config.ads is None:
        logging.getLogger("remora.config").warning(
            "%s has no listeners and no dynamic_resources: nothing will be proxied%s",
            args.config, " (only the admin is served)" if config.admin else "",
        )  # fmt: skip
    _warn_stale_native()
    if args.validate:
        print(f"configuration '{args.config}' OK")
        return 0
    if args.concurrency > 1:
        from remora.proxy.workers import run_workers

        return run_workers(
            config,
            args.concurrency,
            lambda pinned, link: run_config(pinned, args.config, watch=args.watch, worker=link),
        )
    return run_config(config, args.config, watch=args.watch)


def _warn_stale_native() -> None:
    from remora import native

    for module in native.stale():
        logging.getLogger("remora.native").warning(
            "%s: the compiled extension is older than its source and runs the old code; "
            "run `make native`",
            module,
        )


def run_config(
    config: Any, path: str | None = None, watch: bool = False, worker: WorkerLink | None = None
) -> int:
    """Serve `config`; with the file it came from, SIGHUP (and `watch`, changes) reload it.
    As one of `--concurrency` workers, `worker` links it to the supervisor."""
    import asyncio

    import uvloop

    from remora.proxy.reload import Reloader
    from remora.proxy.server import AdminView, ProxyServer

    async def main() -> None:
        server = ProxyServer(config, reuse_port=worker is not None)
        # From the moment a listener is bound, SIGTERM must drain rather than kill: a supervisor
        # may stop the proxy as soon as its port answers. serve_forever takes these over.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_shutdown, sig.name)
        # A SIGHUP that comes while the listeners bind (the file was read already) is kept for
        # the reloader; its default would kill the process.
        early: list[str] = []
        loop.add_signal_handler(signal.SIGHUP, early.append, "SIGHUP")
        await server.start()
        if worker is not None:
            worker.announce("up")
            worker.serve(loop, AdminView(server))
        settle_heap()
        client = None
        if config.ads is not None:  # dynamic_resources: listeners and clusters over ADS
            from remora.xds.client import AdsClient

            client = AdsClient(server, config.ads.target)
            client.start()
        reloader = None
        if path is not None:
            reloader = Reloader(
                path,
                running=lambda: server.config,
                apply=client.apply_static if client is not None else server.apply_static,
                store=server.store,
                load=load if worker is None else lambda file: worker.pin(load(file)),
                accepting=lambda: server.state == "LIVE",
            )
            loop.add_signal_handler(signal.SIGHUP, reloader.request, "SIGHUP")
            if early:
                reloader.request("SIGHUP during start-up")
            if watch:
                reloader.start_watching()
        try:
            await server.serve_forever()
        finally:
            loop.add_signal_handler(signal.SIGHUP, lambda: None)  # no reload while closing
            if reloader is not None:
                await reloader.close()
            if client is not None:
                await client.stop()

    try:
        uvloop.run(main())
    except BrokenPipeError:  # stdout's reader went away: remora.cli exits quietly
        raise
    except OSError as exc:
        print(f"error: {exc.strerror if exc.errno and exc.strerror else exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
