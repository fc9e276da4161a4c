"""`remora bpf inspect | features | gen | layout | load | trace | run`: the loader from a shell.

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


_EXAMPLES = {
    "bpf": """\
examples:
  remora bpf inspect prog.bpf.o
  sudo remora bpf run prog.bpf.o xdp_count --data packet.bin --repeat 1000
  sudo remora bpf load prog.bpf.o --pin /sys/fs/bpf/demo --set verdict=1
""",
    "inspect": """\
examples:
  remora bpf inspect prog.bpf.o
  remora bpf inspect prog.bpf.o --json | python3 -m json.tool
""",
    "features": """\
examples:
  sudo remora bpf features --no-helpers
  sudo remora bpf features --json | python3 -m json.tool
""",
    "gen": """\
examples:
  remora bpf gen prog.bpf.o -o prog_bpf.py
""",
    "layout": """\
examples:
  remora bpf layout prog.bpf.o
  remora bpf layout prog.bpf.o flow_key flow_val --json
""",
    "load": """\
examples:
  sudo remora bpf load prog.bpf.o --pin /sys/fs/bpf/demo
  sudo remora bpf load prog.bpf.o --pin /sys/fs/bpf/demo --program xdp_count
  sudo remora bpf load prog.bpf.o --pin /sys/fs/bpf/demo --set verdict=1 --set magic=0x10
""",
    "trace": """\
examples:
  sudo remora bpf trace execsnoop.bpf.o --type event
  sudo remora bpf trace prog.bpf.o --type event --count 10 --json --set target_pid=1234
""",
    "run": """\
examples:
  sudo remora bpf run prog.bpf.o xdp_count
  sudo remora bpf run prog.bpf.o xdp_count --data packet.bin --repeat 1000 --json
""",
}


def _sub(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    return cmds.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=_EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bpf = sub.add_parser(
        "bpf",
        help="inspect, load and run eBPF objects (no libbpf)",
        description="Inspect, load and test-run eBPF ELF objects with remora's own loader. "
        "load and run need root (CAP_BPF); inspect does not.",
        epilog=_EXAMPLES["bpf"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = bpf.add_subparsers(dest="bpf_command", metavar="BPF_COMMAND")
    bpf.set_defaults(handler=lambda _a: _usage(bpf))
    set_help = "set a global variable before load (an integer: 7, 0x10, -1); repeatable"
    btf_help = "BTF for CO-RE instead of the kernel's (raw, or an ELF file with .BTF)"

    p = _sub(cmds, "inspect", "list the programs, maps and global variables of an object")
    p.add_argument("obj", metavar="OBJECT", help="an eBPF ELF object (clang -target bpf)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guard(_inspect))

    p = _sub(cmds, "features", "probe what the running kernel supports, as bpftool does")
    p.add_argument("--no-helpers", action="store_true", help="skip the per-type helper probe")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guard(_features))

    p = _sub(cmds, "gen", "generate a Python module of ctypes types and typed accessors")
    p.add_argument("obj", metavar="OBJECT", help="an eBPF ELF object with BTF (clang -g)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    p.set_defaults(handler=_guard(_gen))

    p = _sub(cmds, "layout", "show struct layouts from BTF, as pahole does: holes, padding")
    p.add_argument("obj", metavar="OBJECT", help="an eBPF ELF object with BTF (clang -g)")
    p.add_argument("types", nargs="*", metavar="TYPE", help="struct or union names (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guard(_layout))

    p = _sub(cmds, "load", "load an object and pin its programs and maps under a bpffs directory")
    p.add_argument("obj", metavar="OBJECT", help="an eBPF ELF object")
    p.add_argument("--pin", required=True, metavar="DIR", help="bpffs directory for pins")
    p.add_argument("--set", action="append", default=[], metavar="VAR=INT", help=set_help)
    p.add_argument("--btf", metavar="FILE", help=btf_help)
    p.add_argument(
        "--program",
        action="append",
        metavar="NAME",
        help="load only this program and the maps it uses; repeatable (default: all)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guard(_load))

    p = _sub(cmds, "trace", "attach an object's programs by SEC name and print their events")
    p.add_argument("obj", metavar="OBJECT", help="an eBPF ELF object")
    p.add_argument("--type", metavar="STRUCT", help="decode each record as this BTF struct")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds")
    p.add_argument("--set", action="append", default=[], metavar="VAR=INT", help=set_help)
    p.add_argument("--btf", metavar="FILE", help=btf_help)
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.set_defaults(handler=_guard(_trace))

    p = _sub(cmds, "run", "load one program and run it in the kernel with BPF_PROG_TEST_RUN")
    p.add_argument("obj", metavar="OBJECT", help="an eBPF ELF object")
    p.add_argument("prog", metavar="PROGRAM", help="the program's name (see `bpf inspect`)")
    p.add_argument(
        "--data",
        metavar="FILE",
        help="the packet (or a context-only program's context) as raw bytes "
        "(default: 64 zero bytes)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="runs in the kernel; the average time is reported (default: 1)",
    )
    p.add_argument("--btf", metavar="FILE", help=btf_help)
    p.add_argument("--set", action="append", default=[], metavar="VAR=INT", help=set_help)
    p.add_argument("--json", action="store_true", help="print JSON")
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
        except BrokenPipeError:  # stdout's reader went away (`| head`): not an error of ours
            raise
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


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str | Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(text if isinstance(text, str) else text())


def _inspect(args: argparse.Namespace) -> int:
    from remora.bpf.elf import read_elf
    from remora.bpf.inspect import render_text, summarize

    info = summarize(read_elf(args.obj))
    _emit(args, info, lambda: render_text(info))
    return 0


def _features(args: argparse.Namespace) -> int:
    from remora.bpf.features import probe, render

    found = probe(helpers=not args.no_helpers)
    _emit(args, found.to_dict(), lambda: render(found))
    return 0


def _gen(args: argparse.Namespace) -> int:
    from remora.bpf.elf import read_elf
    from remora.bpf.gen import generate

    source = generate(read_elf(args.obj), args.obj)
    if args.output:
        with open(args.output, "w") as f:
            f.write(source)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return 0


def _layout(args: argparse.Namespace) -> int:
    from remora.bpf.elf import read_elf
    from remora.bpf.errors import BPFError
    from remora.bpf.layout import layouts, render

    spec = read_elf(args.obj)
    if spec.btf is None:
        raise BPFError(f"{args.obj}: no BTF (build with clang -g)")
    found = layouts(spec.btf, args.types)
    _emit(
        args,
        {"types": [lay.to_dict() for lay in found]},
        lambda: "\n\n".join(render(lay) for lay in found),
    )
    return 0


def _load(args: argparse.Namespace) -> int:
    from remora.bpf.collection import Collection
    from remora.bpf.errors import BPFLoadError

    try:
        coll = Collection.load(
            args.obj, constants=_constants(args.set), programs=args.program, kernel_btf=args.btf
        )
    except BPFLoadError as e:
        if args.program is None and "cannot be loaded" in str(e):
            raise BPFLoadError(f"{e} (--program NAME loads only the programs named)") from None
        raise
    with coll:
        paths = coll.pin(args.pin)
        data = {"pinned": paths, "btf_error": coll.btf_error}
        _emit(args, data, "\n".join(f"pinned {p}" for p in paths))
    return 0


def _trace(args: argparse.Namespace) -> int:
    from remora.bpf.errors import BPFError
    from remora.bpf.trace import run_trace

    if args.count < 0 or args.duration < 0:
        raise BPFError("--count and --duration must not be negative")
    run_trace(
        args.obj,
        type_name=args.type,
        count=args.count,
        duration=args.duration,
        as_json=args.json,
        constants=_constants(args.set),
        kernel_btf=args.btf,
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from remora.bpf.collection import Collection
    from remora.bpf.errors import BPFError

    data = b"\0" * 64
    if args.data:
        try:
            with open(args.data, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise BPFError(f"--data {args.data}: {exc.strerror}") from None
    if args.repeat < 1:
        raise BPFError("--repeat must be at least 1")
    with Collection.load(
        args.obj, constants=_constants(args.set), programs=[args.prog], kernel_btf=args.btf
    ) as coll:
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
