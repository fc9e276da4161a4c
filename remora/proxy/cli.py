"""`remora proxy`: run or validate an Envoy v3 bootstrap."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remora.argtypes import whole_number
from remora.config.errors import ConfigErrors

if TYPE_CHECKING:
    from remora.proxy.identity.agent import IdentityAgent
    from remora.proxy.workers import WorkerLink

_DESCRIPTION = """\
Run the proxy from an Envoy v3 bootstrap, or validate it with --validate.

SIGTERM, SIGINT and the admin's POST /quitquitquit drain: listeners close, open
requests finish within the drain timeout, then the process exits 0.

Hot restart (Envoy's flags): start a new process with the next --restart-epoch
and the same --base-id. It takes the listening sockets (the admin's too) of the
one at epoch N-1 over @remora_hot_restart_<base-id>_<N-1>, refusing no
connection, starts its counters from the parent's, and serves its own bootstrap.
The parent stops accepting, drains for up to --drain-time-s, and exits 0 once
its connections are done (by --parent-shutdown-time-s at the latest).

SIGHUP reloads the file (so does every change to it, with --watch). Static
listeners and clusters that were added, removed or changed are applied without
dropping a connection. An invalid file is logged with every error, and the
running config keeps serving. The admin address, dynamic_resources and node
need a restart (a hot restart, then): a reload logs that and applies the rest.
"""

_EXAMPLES = """\
examples:
  remora proxy -c examples/front-proxy.yaml
  remora proxy -c examples/front-proxy.yaml --validate
  remora proxy -c examples/front-proxy.yaml --watch     # or: kill -HUP <pid> after an edit
  remora proxy -c new.yaml --restart-epoch 1 --drain-time-s 30   # hot restart of epoch 0
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
        type=whole_number(1, 256),
        default=1,
        metavar="N",
        help="worker processes sharing the listeners through SO_REUSEPORT, with one admin that "
        "sums their stats (default 1: a single process)",
    )
    restart = parser.add_argument_group("hot restart (as Envoy's)")
    restart.add_argument(
        "--restart-epoch", type=whole_number(0), default=0, metavar="N",
        help="0 for a first start; N takes over from the process running at N-1 (default: 0)",
    )  # fmt: skip
    restart.add_argument(
        "--base-id", type=whole_number(0), default=0, metavar="B",
        help="separates proxies on one host: epochs talk only within one base id (default: 0)",
    )  # fmt: skip
    restart.add_argument(
        "--drain-time-s", type=whole_number(0), default=600, metavar="S",
        help="as the new epoch: how long the parent's open connections get (default: 600)",
    )  # fmt: skip
    restart.add_argument(
        "--parent-shutdown-time-s", type=whole_number(0), default=900, metavar="S",
        help="as the new epoch: the parent exits by then at the latest (default: 900)",
    )  # fmt: skip
    restart.add_argument(
        "--disable-hot-restart", action="store_true",
        help="claim no hot restart socket: runs beside other proxies whatever their base id, "
        "and cannot be taken over",
    )  # fmt: skip
    identity = parser.add_argument_group(
        "workload identity (an SVID from `remora control-plane --ca-address`, as secret `default`)"
    )
    identity.add_argument(
        "--identity-ca", metavar="URL",
        help="the control plane's CA endpoint, https://HOST:PORT",
    )  # fmt: skip
    identity.add_argument(
        "--identity-token-file", metavar="FILE",
        help="this workload's token (the mesh config grants it an identity)",
    )  # fmt: skip
    identity.add_argument(
        "--identity-ca-bundle", metavar="FILE",
        help="the CA's root certificate(s), to verify its endpoint on first contact",
    )  # fmt: skip
    identity.add_argument(
        "--identity-wait", type=whole_number(0), default=60, metavar="S",
        help="how long to retry for the first SVID before giving up (default: 60)",
    )  # fmt: skip
    parser.add_argument(
        "--bpf-telemetry", nargs="?", const="", default=None, metavar="CGROUP",
        help="per-connection TCP RTT, retransmits, bytes and lifetime from the kernel (eBPF), "
        "as listener.*.tcp.* and cluster.*.tcp.* stats, for the processes of CGROUP "
        "(default: this process's cgroup); needs root and --concurrency 1",
    )  # fmt: skip
    add_log_level(parser)
    parser.set_defaults(handler=run)


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
    agent = None
    flags = (args.identity_ca, args.identity_token_file, args.identity_ca_bundle)
    if any(flags):
        if not all(flags):
            print(
                "error: --identity-ca, --identity-token-file and --identity-ca-bundle go together",
                file=sys.stderr,
            )
            return 2
        if args.concurrency > 1:
            print("error: --identity-* needs --concurrency 1", file=sys.stderr)
            return 2
        if args.validate:  # validating asks the CA for nothing: a stand-in SVID will do
            if not _stand_in_identity(args):
                return 1
        else:
            agent = _first_identity(args)
            if agent is None:
                return 1
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
        if args.bpf_telemetry is not None:
            print("error: --bpf-telemetry needs --concurrency 1", file=sys.stderr)
            return 2
        if args.restart_epoch > 0:
            print(
                "error: --restart-epoch above 0 with --concurrency above 1 is not supported: "
                "the workers cannot take sockets over from a previous epoch yet",
                file=sys.stderr,
            )
            return 2
        from remora.proxy.workers import run_workers

        # The workers claim no hot restart socket: one process per base id and epoch may.
        return run_workers(
            config,
            args.concurrency,
            lambda pinned, link: run_config(pinned, args.config, watch=args.watch, worker=link),
        )
    if args.disable_hot_restart:
        if args.restart_epoch > 0:
            print("error: --restart-epoch above 0 needs hot restart", file=sys.stderr)
            return 2
        return run_config(
            config, args.config, watch=args.watch, identity=agent, telemetry=args.bpf_telemetry
        )
    restart = HotRestart(
        args.restart_epoch, args.base_id, args.drain_time_s, args.parent_shutdown_time_s
    )
    return run_config(
        config,
        args.config,
        watch=args.watch,
        restart=restart,
        identity=agent,
        telemetry=args.bpf_telemetry,
    )


def _stand_in_identity(args: argparse.Namespace) -> bool:
    from remora.proxy.identity.agent import IdentityConfig, IdentityError
    from remora.proxy.identity.svid import SECRET_NAME, placeholder
    from remora.proxy.tls import secrets as tls_secrets

    config = IdentityConfig(
        args.identity_ca, Path(args.identity_token_file), Path(args.identity_ca_bundle)
    )
    try:
        config.check()
    except IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    tls_secrets.set_local({SECRET_NAME: placeholder(time.time()).secret()})
    return True


def _first_identity(args: argparse.Namespace) -> IdentityAgent | None:
    """The agent with its first SVID held as static secret `default`, or None (said why)."""
    from remora.proxy.identity.agent import IdentityAgent, IdentityConfig, IdentityError
    from remora.proxy.identity.svid import SECRET_NAME
    from remora.proxy.tls import secrets as tls_secrets

    config = IdentityConfig(
        args.identity_ca, Path(args.identity_token_file), Path(args.identity_ca_bundle)
    )
    agent = IdentityAgent(config)
    try:
        config.check()
        svid = agent.obtain_first(args.identity_wait)
    except IdentityError as exc:
        print(f"error: no workload identity: {exc}", file=sys.stderr)
        return None
    tls_secrets.set_local({SECRET_NAME: svid.secret()})
    return agent


def _warn_stale_native() -> None:
    from remora import native

    if native.stale():
        logging.getLogger("remora.native").warning(
            "compiled modules built from other sources than these run old code: %s; "
            "run `make native`",
            native.stale_summary(),
        )


@dataclass(frozen=True, slots=True)
class HotRestart:
    epoch: int = 0
    base_id: int = 0
    drain_time_s: int = 600
    parent_shutdown_time_s: int = 900


def run_config(
    config: Any,
    path: str | None = None,
    watch: bool = False,
    restart: HotRestart | None = None,
    worker: WorkerLink | None = None,
    identity: IdentityAgent | None = None,
    telemetry: str | None = None,
) -> int:
    """Serve `config`; with the file it came from, SIGHUP (and `watch`, changes) reload it.

    With `restart`, this process claims its epoch's hot restart socket first and, past epoch 0,
    takes over from the previous epoch: its sockets as the listeners bind, its counters before
    anything is counted, and its drain once every listener of this process accepts. As one of
    `--concurrency` workers, `worker` links it to the supervisor (and there is no hot restart)."""
    import asyncio

    import uvloop

    from remora.proxy.hot_restart import (
        HotRestartChild,
        HotRestartError,
        HotRestartParent,
        ParentHooks,
        process_age,
    )
    from remora.proxy.reload import Reloader
    from remora.proxy.server import AdminView, ProxyServer

    hot = restart

    async def main() -> None:
        server = ProxyServer(config, reuse_port=worker is not None)
        parent: HotRestartParent | None = None
        child: HotRestartChild | None = None
        if hot is not None:
            server.store.gauge("server.hot_restart_epoch").set(hot.epoch)
            parent = HotRestartParent(hot.base_id, hot.epoch, server.started_at)
            parent.bind()  # claims this epoch, or fails before the previous one is touched
            child = HotRestartChild(hot.base_id, hot.epoch) if hot.epoch > 0 else None
        if child is not None:
            assert hot is not None and parent is not None
            began = time.monotonic()
            child.connect()
            server.first_started_at = parent.first_started_at = child.first_started_at
            child.import_stats(server.store)
            server.inherit = child.take
        # From the moment a listener is bound, SIGTERM must drain rather than kill: a supervisor
        # may stop the proxy as soon as its port answers. serve_forever takes these over.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_shutdown, sig.name)
        # A SIGHUP that comes while the listeners bind (the file was read already) is kept for
        # the reloader; its default would kill the process.
        early: list[str] = []
        loop.add_signal_handler(signal.SIGHUP, early.append, "SIGHUP")
        try:
            await server.start()
        finally:
            server.inherit = None
        if worker is not None:
            worker.announce("up")
            worker.serve(loop, AdminView(server))
        if child is not None and server.shutdown_requested:
            # Stopped while starting: taking over now would leave nothing serving.
            logging.getLogger("remora.hot_restart").info(
                "hot restart abandoned (shut down during start-up); epoch %d keeps serving",
                child.epoch - 1,
            )
            child.close()
            child = None
        if child is not None:
            assert hot is not None
            draining = child.drain_parent(hot.drain_time_s, hot.parent_shutdown_time_s)
            handover_ms = (time.monotonic() - began) * 1000
            logging.getLogger("remora.hot_restart").info(
                "hot restart: epoch %d took %d socket%s from epoch %d (pid %d), which stopped "
                "accepting %.0f ms after the handover began, %.0f ms after this process started; "
                "it drains %d connection%s",
                hot.epoch, child.taken, "" if child.taken == 1 else "s", hot.epoch - 1,
                child.parent_pid, handover_ms, process_age() * 1000,
                draining.open_connections, "" if draining.open_connections == 1 else "s",
            )  # fmt: skip
            child.follow(lambda: logging.getLogger("remora.hot_restart").info(
                "hot restart: epoch %d has exited; its counters are in", hot.epoch - 1
            ))  # fmt: skip
        if parent is not None:
            parent.listen(
                ParentHooks(
                    server.listening_fd,
                    server.stop_accepting,
                    server.begin_hot_restart_drain,
                    server.store,
                )
            )
        settle_heap()
        if identity is not None:
            identity.start(server)
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
        telemetry_task = None
        if telemetry is not None:
            from remora.proxy import tcp_telemetry

            telemetry_task = tcp_telemetry.start(server, telemetry)
        try:
            await server.serve_forever()
        finally:
            loop.add_signal_handler(signal.SIGHUP, lambda: None)  # no reload while closing
            if telemetry_task is not None:
                telemetry_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await telemetry_task
            if reloader is not None:
                await reloader.close()
            if identity is not None:
                await identity.close()
            if client is not None:
                await client.stop()
            if parent is not None:
                await parent.close()
            if child is not None:
                child.close()

    try:
        uvloop.run(main())
    except BrokenPipeError:  # stdout's reader went away: remora.cli exits quietly
        raise
    except OSError as exc:
        print(f"error: {exc.strerror if exc.errno and exc.strerror else exc}", file=sys.stderr)
        return 1
    except HotRestartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
