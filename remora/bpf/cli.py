"""`remora bpf inspect | load | run`: the loader from a shell.

Handlers turn every `BPFError` into one line on stderr and exit status 1; a corrupt object never
produces a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bpf = sub.add_parser("bpf", help="inspect, load and run eBPF objects (no libbpf)")
    cmds = bpf.add_subparsers(dest="bpf_command", metavar="BPF_COMMAND")
    bpf.set_defaults(handler=lambda _a: _usage(bpf))

    p = cmds.add_parser("inspect", help="list programs, maps, variables of an object")
    p.add_argument("obj")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guard(_inspect))

    p = cmds.add_parser("load", help="load an object and pin everything under a bpffs dir")
    p.add_argument("obj")
    p.add_argument("--pin", required=True, metavar="DIR", help="bpffs directory for pins")
    p.add_argument("--set", action="append", default=[], metavar="VAR=INT", help="set a global")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(_load))

    p = cmds.add_parser("run", help="load one program and BPF_PROG_TEST_RUN it")
    p.add_argument("obj")
    p.add_argument("prog")
    p.add_argument("--data", metavar="FILE", help="packet/context bytes (default: 64 zeros)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="VAR=INT", help="set a global")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_guard(_run))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _guard(fn: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from remora.bpf.errors import BPFError

        try:
            return fn(args)
        except BPFError as e:
            print(f"remora bpf {args.bpf_command}: error: {e}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as e:  # unreadable files, arguments the API refuses
            print(f"remora bpf {args.bpf_command}: error: {e}", file=sys.stderr)
            return 1

    return run


def _constants(pairs: list[str]) -> dict[str, Any]:
    from remora.bpf.errors import BPFError

    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise BPFError(f"--set {pair!r}: expected VAR=VALUE")
        try:
            out[name] = int(value, 0)
        except ValueError:
            raise BPFError(f"--set {pair!r}: value must be an integer") from None
    return out


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _inspect(args: argparse.Namespace) -> int:
    from remora.bpf.elf import read_elf
    from remora.bpf.inspect import render_text, summarize

    info = summarize(read_elf(args.obj))
    _emit(args, info, render_text(info))
    return 0


def _load(args: argparse.Namespace) -> int:
    from remora.bpf.collection import Collection

    with Collection.load(args.obj, constants=_constants(args.set)) as coll:
        paths = coll.pin(args.pin)
        data = {"pinned": paths, "btf_error": coll.btf_error}
        _emit(args, data, "\n".join(f"pinned {p}" for p in paths))
    return 0


def _run(args: argparse.Namespace) -> int:
    from remora.bpf.collection import Collection

    data = b"\0" * 64
    if args.data:
        with open(args.data, "rb") as f:
            data = f.read()
    if args.repeat < 1:
        from remora.bpf.errors import BPFError

        raise BPFError("--repeat must be at least 1")
    with Collection.load(args.obj, constants=_constants(args.set), programs=[args.prog]) as coll:
        res = coll.programs[args.prog].test_run(data, repeat=args.repeat)
    out = {
        "program": args.prog,
        "retval": res.retval,
        "duration_ns": res.duration_ns,
        "repeat": args.repeat,
        "data_out_len": len(res.data_out),
        "data_changed": res.data_out != data,
    }
    _emit(
        args,
        out,
        f"{args.prog}: retval {res.retval}, average {res.duration_ns} ns over {args.repeat} runs",
    )
    return 0
