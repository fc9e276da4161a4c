"""`remora control-plane`: serve a config directory over xDS (ADS, SotW and delta)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "control-plane",
        help="serve a directory of mesh YAML over xDS to remora sidecars and gRPC clients",
        description="Serve --config-dir over gRPC xDS (ADS and CDS/LDS/RDS/EDS; SotW and "
        "delta). The directory is watched; a bad change is rejected and logged.",
    )
    parser.add_argument("--config-dir", required=True, metavar="DIR")
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
    from pathlib import Path

    from remora.proxy.cli import setup_logging

    setup_logging(args.log_level)
    directory = Path(args.config_dir)
    if not directory.is_dir():
        print(f"error: --config-dir {directory} is not a directory", file=sys.stderr)
        return 1
    try:
        xds_host, xds_port = split_address(args.xds_address)
        admin = split_address(args.admin_address) if args.admin_address else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(directory, (xds_host, xds_port), admin))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        logging.getLogger("remora.xds").info("stopped")
    return 0


async def _serve(directory: object, xds: tuple[str, int], admin: tuple[str, int] | None) -> None:
    import asyncio
    import logging
    import signal
    from pathlib import Path

    from remora.xds.admin import ControlPlaneAdmin
    from remora.xds.cache import SnapshotCache
    from remora.xds.server import XdsServer
    from remora.xds.source import DirectorySource, mesh_group

    assert isinstance(directory, Path)
    cache = SnapshotCache(mesh_group)
    server = XdsServer(cache)
    source = DirectorySource(directory, cache, server.stats)
    ready = asyncio.Event()
    watch = asyncio.create_task(source.watch(ready))
    await ready.wait()
    await server.start(*xds)
    admin_server = None
    if admin is not None:
        admin_server = ControlPlaneAdmin(cache, server, lambda: source.last_error)
        port = await admin_server.start(*admin)
        logging.getLogger("remora.xds").info("admin on %s:%d", admin[0], port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watch.cancel()
        await server.stop(1.0)
        if admin_server is not None:
            await admin_server.close()
