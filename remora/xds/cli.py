"""`remora control-plane`: serve a config directory or a git branch over xDS (SotW and delta)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remora.xds.ca.api import SigningApi
    from remora.xds.gitsource import GitSource
    from remora.xds.source import DirectorySource

_EXAMPLES = """\
examples:
  remora control-plane --config-dir examples/mesh --xds-address 127.0.0.1:18000
  remora control-plane --config-dir examples/mesh --validate
  remora control-plane --git-repo ~/mesh-config --git-branch prod --git-path mesh \\
      --xds-address 0.0.0.0:18000 --admin-address 127.0.0.1:19000
  remora control-plane --config-dir examples/mesh --xds-address 127.0.0.1:18000 \\
      --ca-dir /var/lib/remora/ca --ca-address 127.0.0.1:18443 --trust-domain example.org
  remora control-plane --new-token web --namespace shop   # token on stdout, YAML on stderr
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
    source.add_argument(
        "--new-token",
        metavar="SA",
        help="print a new workload token for service account SA (stdout) and the mesh YAML "
        "granting it, with only its SHA-256 (stderr), then exit",
    )
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
    _add_ca_flags(parser)
    add_log_level(parser)
    parser.set_defaults(handler=run)


def _add_ca_flags(parser: argparse.ArgumentParser) -> None:
    ca = parser.add_argument_group("certificate authority (SPIFFE X.509 SVIDs; see docs/ca.md)")
    ca.add_argument(
        "--ca-dir", metavar="DIR",
        help="run the CA, keeping its keys and state in DIR (created 0700); without it no CA runs",
    )  # fmt: skip
    ca.add_argument(
        "--ca-address", metavar="HOST:PORT",
        help="where the HTTPS signing API listens (required with --ca-dir)",
    )  # fmt: skip
    ca.add_argument(
        "--trust-domain", default="cluster.local", metavar="DOMAIN",
        help="the SPIFFE trust domain of issued IDs (default: cluster.local)",
    )  # fmt: skip
    ca.add_argument(
        "--svid-ttl", type=float, default=86400.0, metavar="SECONDS",
        help="lifetime of issued SVIDs, 10 s to 30 days (default: 86400)",
    )  # fmt: skip
    ca.add_argument(
        "--ca-cert", metavar="FILE",
        help="sign with this operator CA certificate (root or intermediate, then its chain) "
        "instead of remora's own root",
    )  # fmt: skip
    ca.add_argument("--ca-key", metavar="FILE", help="the private key of --ca-cert")
    ca.add_argument(
        "--ca-bundle", metavar="FILE",
        help="the roots to trust, when --ca-cert does not end in a self-signed root",
    )  # fmt: skip
    ca.add_argument(
        "--namespace", metavar="NS",
        help="the namespace of --new-token's service account (default: default)",
    )  # fmt: skip


def _ca_usage_error(args: argparse.Namespace) -> str | None:
    """The first wrong combination of CA flags, as a usage message; None if they fit."""
    from remora.xds.ca.authority import MAX_TTL, MIN_TTL
    from remora.xds.ca.spiffe import check_trust_domain

    if args.namespace is not None and args.new_token is None:
        return "--namespace is only used with --new-token"
    needs_dir = ("--ca-address", "--ca-cert", "--ca-key", "--ca-bundle")
    for flag in needs_dir:
        if getattr(args, flag[2:].replace("-", "_")) is not None and args.ca_dir is None:
            return f"{flag} needs --ca-dir (the CA's own directory)"
    if (args.ca_cert is None) != (args.ca_key is None):
        return "--ca-cert and --ca-key go together"
    if args.ca_bundle is not None and args.ca_cert is None:
        return "--ca-bundle is only used with --ca-cert"
    if not MIN_TTL <= args.svid_ttl <= MAX_TTL:
        return f"--svid-ttl must be between {MIN_TTL:.0f} and {MAX_TTL:.0f} seconds (30 days)"
    try:
        check_trust_domain(args.trust_domain)
    except ValueError as exc:
        return f"--trust-domain: {exc}"
    if args.ca_dir is not None and args.ca_address is None and not args.validate:
        return "--ca-address is required with --ca-dir"
    return None


def _new_token(args: argparse.Namespace) -> int:
    """A token for a workload (stdout, for its secret store) and the YAML that grants it
    (stderr, for the mesh config in git), which holds only the token's hash."""
    from remora.xds.ca.grants import DEFAULT_NAMESPACE, new_token
    from remora.xds.ca.spiffe import check_segment

    namespace = args.namespace or DEFAULT_NAMESPACE
    try:
        check_segment("service account", args.new_token)
        check_segment("namespace", namespace)
    except ValueError as exc:
        print(f"error: --new-token: {exc}", file=sys.stderr)
        return 2
    token, digest = new_token()
    print(token)
    print(
        "# grant it in a mesh file (only the hash goes to git; the token goes to the workload):\n"
        f"identities:\n  {args.new_token}:\n    namespace: {namespace}\n"
        f"    tokens_sha256: [{digest}]",
        file=sys.stderr,
    )
    return 0


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
    if (usage := _ca_usage_error(args)) is not None:
        print(f"error: {usage}", file=sys.stderr)
        return 2
    if args.new_token is not None:
        return _new_token(args)
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
        ca = _address("--ca-address", args.ca_address) if args.ca_dir else None
        asyncio.run(_serve(args, xds, admin, ca))
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
        Identity,
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
            # As a control plane with its CA would build them (the bundle's bytes aside).
            build_snapshots(config, identity=Identity(args.trust_domain, b""))
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
    granted = len(config.identities)
    identities = f", {granted} identit{'y' if granted == 1 else 'ies'}" if granted else ""
    print(
        f"configuration {where!r} OK: {services}{f' ({names})' if names else ''}, {raw}{identities}"
    )
    return 0


def _open_ca(args: argparse.Namespace, publisher: Any) -> SigningApi:
    """The CA and its signing API, granting the identities of the source's last good config."""
    from remora.xds.ca.api import SigningApi
    from remora.xds.ca.authority import CaError, CertificateAuthority
    from remora.xds.ca.grants import Grants

    def optional(value: str | None) -> Path | None:
        return Path(value) if value is not None else None

    try:
        authority = CertificateAuthority.open(
            Path(args.ca_dir), args.trust_domain, svid_ttl=args.svid_ttl,
            cert_file=optional(args.ca_cert), key_file=optional(args.ca_key),
            bundle_file=optional(args.ca_bundle),
        )  # fmt: skip
    except CaError as exc:
        raise StartupError(f"cannot start the CA: {exc}") from None
    cached: list[tuple[object, Grants]] = []

    def grants() -> Grants:
        # The identities of the source's last good config (`identities:` in its files).
        identities = publisher.config.identities if publisher.config is not None else ()
        if not cached or cached[0][0] is not identities:
            cached[:] = [(identities, Grants(identities))]
        return cached[0][1]

    return SigningApi(authority, grants, args.trust_domain)


def _serving_hosts(host: str) -> list[str]:
    """The names the CA's serving certificate carries: the bound address, or for a wildcard,
    loopback and this host's name (clients elsewhere use that name)."""
    import socket

    if host in ("", "0.0.0.0", "::"):
        return ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    return [host]


async def _serve(
    args: argparse.Namespace,
    xds: tuple[str, int],
    admin: tuple[str, int] | None,
    ca: tuple[str, int] | None = None,
) -> None:
    """Load, bind, serve until SIGTERM or SIGINT; whatever started is stopped on the way out."""
    import asyncio
    import logging
    import os
    import signal
    import socket

    from remora.xds.admin import ControlPlaneAdmin
    from remora.xds.cache import SnapshotCache
    from remora.xds.registration import RegistrationApi
    from remora.xds.server import XdsServer
    from remora.xds.source import FirstLoadError, Identity, Publisher, mesh_group

    cache = SnapshotCache(mesh_group)
    server = XdsServer(cache)
    publisher = Publisher(cache, server.stats)
    registrations = RegistrationApi(publisher)
    signing = None
    if ca is not None:
        # Before the first load: services with mTLS need the trust domain and the bundle.
        signing = _open_ca(args, publisher)
        authority = signing.authority
        publisher.identity = lambda: Identity(args.trust_domain, authority.bundle_pem())
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
    ca_server = None
    try:
        try:
            await server.start(*xds)
        except OSError as exc:
            raise StartupError(f"--xds-address: {exc}") from None
        if ca is not None and signing is not None:
            from remora.xds.ca.server import CaServer

            ca_server = CaServer(signing, _serving_hosts(ca[0]))
            try:
                ca_port = await ca_server.start(*ca)
            except socket.gaierror:
                raise StartupError(f"--ca-address: cannot resolve {ca[0]!r}") from None
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(f"--ca-address: cannot bind {ca[0]}:{ca[1]}: {reason}") from None
            tasks.append(asyncio.create_task(ca_server.maintain(), name="ca-serving-cert"))
            logging.getLogger("remora.ca").info(
                "CA for trust domain %s on https://%s:%d (state in %s)",
                args.trust_domain, ca[0], ca_port, args.ca_dir,
            )  # fmt: skip
        if admin is not None:
            admin_server = ControlPlaneAdmin(
                cache, server, lambda: source.last_error, source_info, registrations, signing,
                after_rotation=publisher.refresh,  # the bundle changed: push it
            )  # fmt: skip
            try:
                port = await admin_server.start(*admin)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(
                    f"--admin-address: cannot bind {admin[0]}:{admin[1]}: {reason}"
                ) from None
            logging.getLogger("remora.xds").info("admin on %s:%d", admin[0], port)
        tasks += [
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
        if ca_server is not None:
            await ca_server.close()
