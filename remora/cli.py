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

# Command -> the module that defines it with `register(subparsers)`. Order is the order in
# `remora --help`. Only the chosen command's module is imported, so `remora bpf ...` does not pay
# for the proxy's or Wasm host's imports.
SUBCOMMANDS: dict[str, str] = {
    "proxy": "remora.proxy.cli",
    "demo": "remora.demo.cli",
    "control-plane": "remora.xds.cli",
    "bpf": "remora.bpf.cli",
    "wasm": "remora.wasm.cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (given a known `command`) one with only that command's module."""
    parser = argparse.ArgumentParser(
        prog="remora",
        description="remora: a service-mesh sidecar and toolkit (proxy, eBPF, Wasm, xDS).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="print the remora version")
    version.set_defaults(handler=_version)
    if command in SUBCOMMANDS:
        modules = [SUBCOMMANDS[command]]
    elif command == "version":
        modules = []
    else:
        modules = list(dict.fromkeys(SUBCOMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def _version(_args: argparse.Namespace) -> int:
    print(f"remora {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments[0] if arguments else None)
    args = parser.parse_args(arguments)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = handler(args)
    return result
