"""The `remora` command line.

Each pillar owns its subcommands in its own `cli` module with a `register(subparsers)` function, so
this file only lists them; importing a pillar's heavy dependencies happens inside its handlers.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"remora {__version__}")
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


_EXAMPLES = """\
examples:
  remora demo                                  # a working proxy on localhost (make run)
  remora proxy -c envoy.yaml --validate        # check an Envoy v3 bootstrap
  remora control-plane --config-dir examples/mesh --xds-address 127.0.0.1:18000
  remora COMMAND --help                        # each command's options and examples
"""

# 128 + SIGPIPE: what a shell reports for a program whose reader went away (`| head -1`).
EXIT_BROKEN_PIPE = 141


def _version(_args: argparse.Namespace) -> int:
    print(f"remora {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(arguments)
    except BrokenPipeError:
        return _reader_gone()
    except SystemExit:  # argparse after --help or a usage error: its output is still buffered
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _reader_gone()
        raise
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the traceback on request
        if os.environ.get("REMORA_TRACEBACK"):
            raise
        print(
            f"error: internal error ({type(exc).__name__}: {exc}); this is a bug in remora, "
            "please report it with the traceback that REMORA_TRACEBACK=1 prints",
            file=sys.stderr,
        )
        return 70  # EX_SOFTWARE


def _dispatch(arguments: list[str]) -> int:
    parser = build_parser(arguments[0] if arguments else None)
    args = parser.parse_args(arguments)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = handler(args)
    sys.stdout.flush()  # a reader that went away shows here, inside the BrokenPipeError guard
    return result


def _reader_gone() -> int:
    """stdout's reader closed early: stop quietly, as `cat` does under `| head -1`.

    stdout is pointed at /dev/null first, so the interpreter's own flush at exit cannot raise
    (and print) the same BrokenPipeError again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE
