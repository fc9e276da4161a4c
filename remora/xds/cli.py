"""`remora control-plane`: serve a config directory or a git branch over xDS (SotW and delta)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remora.xds.gitsource import GitSource
    from remora.xds.source import DirectorySource

_EXAMPLES = """\
examples:
  remora control-plane --config-dir examples/mesh --xds-address 127.0.0.1:18000
  remora control-plane --config-dir examples/mesh --validate
  remora control-plane --git-repo ~/mesh-config --git-branch prod --git-path mesh \\
      --xds-address 0.0.0.0:18000 --admin-address 127.0.0.1:19000
"""


class StartupError(Exception):
    """The control plane cannot start; the message is the whole explanation for the user."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from remora.proxy.cli import add_log_level

    parser = sub.add_parser(
        "control-plane",
        help="serve mesh YAML (a directory or a git branch) over xDS to remora sidecars and "
        "gRPC clients",
        description="Serve --config-dir, or --git-branch of --git-repo, over gRPC xDS (ADS and "
        "CDS/LDS/RDS/EDS; SotW and delta). The source is watched; a bad change is rejected "
        "and logged, and the last good config keeps serving. A source that fails its first "
        "load is an error: the control plane exits 1 rather than serve nothing. The admin "
        "address also takes endpoint registrations (POST /registrations, with a TTL renewed "
        "by heartbeats).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config-dir",
        metavar="DIR",
        help="a directory of mesh YAML (`services:`) and raw resource files (`resources:`)",
    )
    source.add_argument("--git-repo", metavar="PATH", help="a local git repository")
    parser.add_argument(
        "--git-branch", default="main", metavar="BRANCH",
        help="the branch to serve (default: main); HEAD follows whatever is checked out",
    )  # fmt: skip
    parser.add_argument(
        "--git-path",
        default="",
        metavar="DIR",
        help="the config's directory inside the repository (default: its root)",
    )
    parser.add_argument(
        "--git-poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often the branch is checked, in seconds (default: 1)",
    )
    parser.add_argument(
        "--xds-address",
        metavar="HOST:PORT",
        help="where the gRPC xDS server listens (required unless --validate)",
    )
    parser.add_argument(
        "--admin-address",
        metavar="HOST:PORT",
        help="admin HTTP: /snapshots, /streams, /nacks, /metrics, /registrations (default: off)",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="load the source once, print what it holds or every error, and exit 0 or 1",
    )
    add_log_level(parser)
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
        what = "not a directory" if Path(args.config_dir).exists() else "no such directory"
        print(f"error: --config-dir {args.config_dir}: {what}", file=sys.stderr)
        return 1
    if args.git_repo is not None and not Path(args.git_repo).is_dir():
        what = "not a directory" if Path(args.git_repo).exists() else "no such directory"
        print(f"error: --git-repo {args.git_repo}: {what}", file=sys.stderr)
        return 1
    if args.validate:
        return _validate(args)
    if not 0.01 <= args.git_poll <= 3600:
        print("error: --git-poll must be between 0.01 and 3600 seconds", file=sys.stderr)
        return 1
    if args.xds_address is None:
        print("error: --xds-address is required (or use --validate)", file=sys.stderr)
        return 2
    try:
        xds = _address("--xds-address", args.xds_address)
        admin = _address("--admin-address", args.admin_address) if args.admin_address else None
        asyncio.run(_serve(args, xds, admin))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        logging.getLogger("remora.xds").info("stopped")
    return 0


def _address(flag: str, value: str) -> tuple[str, int]:
    try:
        return split_address(value)
    except ValueError as exc:
        raise StartupError(f"{flag}: {exc}") from None


def _make_source(args: argparse.Namespace, publisher: Any) -> DirectorySource | GitSource:
    from remora.xds.gitsource import GitSource
    from remora.xds.source import DirectorySource

    if args.git_repo is not None:
        return GitSource(
            Path(args.git_repo), args.git_branch, publisher, args.git_poll, args.git_path
        )
    return DirectorySource(Path(args.config_dir), publisher.cache, publisher=publisher)


def _validate(args: argparse.Namespace) -> int:
    """Parse the source once and build every group's snapshot, exactly as serving would."""
    from remora.xds.cache import SnapshotCache
    from remora.xds.gitsource import GitError, GitSource
    from remora.xds.source import (
        Publisher,
        SourceError,
        build_snapshots,
        mesh_group,
        parse_directory,
    )

    if args.git_repo is not None:
        where = f"{args.git_repo} {args.git_branch}" + (
            f" ({args.git_path})" if args.git_path else ""
        )
        source = GitSource(
            Path(args.git_repo), args.git_branch, Publisher(SnapshotCache(mesh_group)), 1.0,
            args.git_path,
        )  # fmt: skip
        try:
            loaded = source.check()
        except GitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        assert loaded is not None
        where += f" at commit {loaded.commit.short}"
        errors = loaded.error.splitlines()
        config = loaded.config
    else:
        where, errors, config = args.config_dir, [], None
        try:
            config = parse_directory(Path(args.config_dir))
        except SourceError as exc:
            errors = [str(e) for e in exc.errors]
    if config is not None and not errors:
        try:
            build_snapshots(config)
        except SourceError as exc:
            errors = [str(e) for e in exc.errors]
    if errors or config is None:
        print(f"error: invalid configuration {where!r}:", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    names = ", ".join(sorted(s.name for s in config.services))
    services = f"{len(config.services)} service{'s' if len(config.services) != 1 else ''}"
    raw = f"{len(config.raw)} raw resource{'s' if len(config.raw) != 1 else ''}"
    if not config.services and not config.raw:
        print(
            f"warning: {where!r} has no services and no resources (looked for .yaml, .yml and "
            ".json files with `services:` or `resources:`)",
            file=sys.stderr,
        )
    print(f"configuration {where!r} OK: {services}{f' ({names})' if names else ''}, {raw}")
    return 0


async def _serve(
    args: argparse.Namespace, xds: tuple[str, int], admin: tuple[str, int] | None
) -> None:
    """Load, bind, serve until SIGTERM or SIGINT; whatever started is stopped on the way out."""
    import asyncio
    import logging
    import os
    import signal

    from remora.xds.admin import ControlPlaneAdmin
    from remora.xds.cache import SnapshotCache
    from remora.xds.registration import RegistrationApi
    from remora.xds.server import XdsServer
    from remora.xds.source import FirstLoadError, Publisher, mesh_group

    cache = SnapshotCache(mesh_group)
    server = XdsServer(cache)
    publisher = Publisher(cache, server.stats)
    registrations = RegistrationApi(publisher)
    source = _make_source(args, publisher)
    try:
        source.load_first()
    except FirstLoadError as exc:
        raise StartupError(f"cannot start: {exc}") from None

    def source_info() -> dict[str, Any]:
        from remora.xds.gitsource import GitSource

        if isinstance(source, GitSource):
            return source.info()
        return {"kind": "directory", "directory": str(source.directory),
                "last_error": source.last_error}  # fmt: skip

    tasks: list[asyncio.Task[None]] = []
    admin_server = None
    try:
        try:
            await server.start(*xds)
        except OSError as exc:
            raise StartupError(f"--xds-address: {exc}") from None
        if admin is not None:
            admin_server = ControlPlaneAdmin(
                cache, server, lambda: source.last_error, source_info, registrations
            )
            try:
                port = await admin_server.start(*admin)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(
                    f"--admin-address: cannot bind {admin[0]}:{admin[1]}: {reason}"
                ) from None
            logging.getLogger("remora.xds").info("admin on %s:%d", admin[0], port)
        tasks = [
            asyncio.create_task(source.watch(), name="config-source"),
            asyncio.create_task(registrations.expire_forever(), name="registration-expiry"),
        ]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logging.getLogger("remora.xds").info("stopping: closing xDS streams")
    finally:
        for task in tasks:
            task.cancel()
        await server.stop(1.0)
        if admin_server is not None:
            await admin_server.close()
