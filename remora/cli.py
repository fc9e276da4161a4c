"""The `remora` command line.

Each pillar owns its subcommands in its own `cli` module with a `register(subparsers)` function, so
this file only lists them; importing a pillar's heavy dependencies happens inside its handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from remora import __version__

# Modules that define `register(subparsers) -> None`. Order is the order in `remora --help`.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "remora.proxy.cli",
    "remora.demo.cli",
    "remora.bpf.cli",
    "remora.wasm.cli",
    "remora.xds.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remora",
        description="remora: a service-mesh sidecar and toolkit (proxy, eBPF, Wasm, xDS).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="print the remora version")
    version.set_defaults(handler=_version)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version(_args: argparse.Namespace) -> int:
    print(f"remora {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = handler(args)
    return result
