"""`remora control-plane`: serve a config directory or a git branch over xDS (SotW and delta)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "control-plane",
        help="serve mesh YAML (a directory or a git branch) over xDS to remora sidecars and "
        "gRPC clients",
        description="Serve --config-dir, or --git-branch of --git-repo, over gRPC xDS (ADS and "
        "CDS/LDS/RDS/EDS; SotW and delta). The source is watched; a bad change is rejected "
        "and logged, and the last good config keeps serving. The admin address also takes "
        "endpoint registrations (POST /registrations, with a TTL renewed by heartbeats).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-dir", metavar="DIR")
    source.add_argument("--git-repo", metavar="PATH", help="a local git repository")
    parser.add_argument(
        "--git-branch", default="main", metavar="BRANCH",
        help="the branch to serve (default main); HEAD follows whatever is checked out",
    )  # fmt: skip
    parser.add_argument(
        "--git-path",
        default="",
        metavar="DIR",
        help="the config's directory inside the repository (default: its root)",
    )
    parser.add_argument("--git-poll", type=float, default=1.0, metavar="SECONDS",
                        help="how often the branch is checked (default 1)")  # fmt: skip
    parser.add_argument("--xds-address", required=True, metavar="HOST:PORT")
    parser.add_argument("--admin-address", metavar="HOST:PORT")
    parser.add_argument("--log-level", "-l", default="info")
    parser.set_defaults(handler=run)


def split_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from remora.proxy.cli import setup_logging

    setup_logging(args.log_level)
    if args.config_dir is not None and not Path(args.config_dir).is_dir():
        print(f"error: --config-dir {args.config_dir} is not a directory", file=sys.stderr)
        return 1
    if args.git_repo is not None and not Path(args.git_repo).is_dir():
        print(f"error: --git-repo {args.git_repo} is not a directory", file=sys.stderr)
        return 1
    if not 0.01 <= args.git_poll <= 3600:
        print("error: --git-poll must be between 0.01 and 3600 seconds", file=sys.stderr)
        return 1
    try:
        xds_host, xds_port = split_address(args.xds_address)
        admin = split_address(args.admin_address) if args.admin_address else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(args, (xds_host, xds_port), admin))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        logging.getLogger("remora.xds").info("stopped")
    return 0


async def _serve(
    args: argparse.Namespace, xds: tuple[str, int], admin: tuple[str, int] | None
) -> None:
    import asyncio
    import logging
    import signal

    from remora.xds.admin import ControlPlaneAdmin
    from remora.xds.cache import SnapshotCache
    from remora.xds.gitsource import GitSource
    from remora.xds.registration import RegistrationApi
    from remora.xds.server import XdsServer
    from remora.xds.source import DirectorySource, Publisher, mesh_group

    cache = SnapshotCache(mesh_group)
    server = XdsServer(cache)
    publisher = Publisher(cache, server.stats)
    registrations = RegistrationApi(publisher)
    source: DirectorySource | GitSource
    if args.git_repo is not None:
        source = GitSource(
            Path(args.git_repo), args.git_branch, publisher, args.git_poll, args.git_path
        )
    else:
        source = DirectorySource(Path(args.config_dir), cache, publisher=publisher)

    def source_info() -> dict[str, Any]:
        if isinstance(source, GitSource):
            return source.info()
        return {"kind": "directory", "directory": str(source.directory),
                "last_error": source.last_error}  # fmt: skip

    ready = asyncio.Event()
    tasks = [
        asyncio.create_task(source.watch(ready), name="config-source"),
        asyncio.create_task(registrations.expire_forever(), name="registration-expiry"),
    ]
    await ready.wait()
    await server.start(*xds)
    admin_server = None
    if admin is not None:
        admin_server = ControlPlaneAdmin(
            cache, server, lambda: source.last_error, source_info, registrations
        )
        port = await admin_server.start(*admin)
        logging.getLogger("remora.xds").info("admin on %s:%d", admin[0], port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await server.stop(1.0)
        if admin_server is not None:
            await admin_server.close()
