"""`remora wasm run` and `remora wasm inspect`.

Exit codes of `run`: the guest's own exit code when it exits; 1 when the module, options or policy
are unusable; 134 when the guest trapped or hit a limit (128 + SIGABRT, the convention for "the
program was killed", which wasmtime's own CLI also uses for traps).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_HOST_ERROR = 1
EXIT_TRAPPED = 134
# Kept in step with remora.wasm.limits (imported lazily there: wasmtime is slow to import).
DEFAULT_MAX_TABLE_ELEMENTS = 10_000

_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3}


def parse_size(text: str) -> int:
    """`16MiB` -> 16777216; `16MB`/`16M` are decimal (SI), `KiB/MiB/GiB` binary."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 65536, 64KiB, 16MiB)")
    number, unit = int(match.group(1)), (match.group(2) or "").lower()
    if unit.endswith(("ib", "i")):
        exponent = "kmg".index(unit[0]) + 1
        return number * (1 << (10 * exponent))
    return number * _UNITS[unit[:1]]


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def _fuel(text: str) -> int:
    value = _positive_int(text)
    if value >= 1 << 64:
        raise argparse.ArgumentTypeError(f"at most 2**64 - 1, got {text}")
    return value


def _seconds(text: str) -> float:
    from remora.wasm.limits import check_timeout

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    try:
        check_timeout(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _wasm_stack(text: str) -> int:
    from remora.wasm.engine import check_wasm_stack

    value = parse_size(text)
    try:
        check_wasm_stack(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return name, value


class _IntermixedParser(argparse.ArgumentParser):
    """Lets options appear before or after the module: `run m.wasm --fuel 9 -- guest args`.

    Plain argparse binds all positionals at the first positional chunk, so options after the
    module would end it; the intermixed parse collects options first, then positionals.
    """

    _nested = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._nested:
            return super().parse_known_args(args, namespace)
        self._nested = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._nested = False


_RUN_EXAMPLES = """\
examples:
  remora wasm run hello.wasm
  remora wasm run tool.wasm --dir ./data::/data --env MODE=fast --fuel 1000000 \\
      --max-memory 16MiB --timeout 2 -- arg1 arg2
  remora wasm run spin.wasm --timeout 0.2; echo $?      # 134: trapped at the deadline

exit status: the guest's own exit code; 1 when the module, options or policy are unusable;
134 when the guest trapped or hit a limit.
"""

_INSPECT_EXAMPLES = """\
examples:
  remora wasm inspect filter.wasm
  remora wasm inspect filter.wasm --json | python3 -m json.tool
"""

_SIZE_HELP = "sizes: 65536, 64KiB, 16MiB, 1GiB (binary) or 16MB (decimal)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wasm = sub.add_parser(
        "wasm",
        help="run and inspect sandboxed WebAssembly modules",
        description="Run WASI commands under a deny-by-default sandbox, or inspect a module.",
        epilog="examples:\n  remora wasm run hello.wasm\n  remora wasm inspect hello.wasm\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wasm_sub = wasm.add_subparsers(
        dest="wasm_command", metavar="WASM_COMMAND", parser_class=_IntermixedParser
    )
    wasm.set_defaults(handler=lambda _args: _usage(wasm))

    run = wasm_sub.add_parser(
        "run",
        help="run a WASI command under a deny-by-default policy",
        description="Run a WASI command (its _start). Nothing is granted unless given: no "
        "arguments beyond ARGS, no environment, no directories, no network. Output goes to "
        "this process's stdout and stderr. " + _SIZE_HELP + ".",
        epilog=_RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("module", type=Path, help="the .wasm file")
    run.add_argument("guest_args", nargs="*", default=[], metavar="ARGS", help="arguments after --")
    run.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="HOST::GUEST[:rw]",
        help="preopen a host directory at GUEST (read-only unless :rw); repeatable (default: none)",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        type=_env_pair,
        metavar="K=V",
        help="a variable for the guest's environment; repeatable (default: none)",
    )
    run.add_argument("--fuel", type=_fuel, metavar="N",
                     help="CPU budget in wasmtime fuel units, about one per instruction "
                     "(default: unlimited)")  # fmt: skip
    run.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                     help="wall-clock deadline in seconds, finite and at most 1e9 "
                     "(default: none)")  # fmt: skip
    run.add_argument(
        "--max-memory",
        type=parse_size,
        metavar="SIZE",
        help="cap on linear memory, e.g. 16MiB (default: wasm's 4 GiB)",
    )
    run.add_argument("--max-wasm-stack", type=_wasm_stack, metavar="SIZE",
                     help="cap on the guest's native stack, 1 byte to 2MiB, e.g. 256KiB "
                     "(default: wasmtime's 512KiB)")  # fmt: skip
    run.add_argument("--max-table-elements", type=_positive_int, metavar="N",
                     default=DEFAULT_MAX_TABLE_ELEMENTS,
                     help="cap on the elements of each table; table.grow past it returns -1, "
                     "and each element also counts 8 bytes against --max-memory (default: "
                     f"{DEFAULT_MAX_TABLE_ELEMENTS})")  # fmt: skip
    run.add_argument("--cache-dir", type=Path, metavar="DIR",
                     help="compiled-module cache (default: $XDG_CACHE_HOME/remora/wasm or "
                     "~/.cache/remora/wasm)")  # fmt: skip
    run.add_argument("--no-cache", action="store_true", help="always compile, never cache")
    run.set_defaults(handler=_run)

    inspect = wasm_sub.add_parser(
        "inspect",
        help="list imports, exports, memories, sections",
        description="Describe a module without running it: its imports, exports, memories "
        "and custom sections.",
        epilog=_INSPECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("module", type=Path, help="the .wasm file")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _error(message: str) -> None:
    print(f"remora wasm: error: {message}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"remora wasm: note: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from remora.wasm.cache import ModuleCache
    from remora.wasm.errors import CacheError, GuestTrap, WasmError
    from remora.wasm.limits import Limits
    from remora.wasm.runner import WasmHost, read_module
    from remora.wasm.sandbox import Preopen, SandboxPolicy

    try:
        wasm = read_module(args.module)
        policy = SandboxPolicy(
            args=(args.module.name, *args.guest_args),
            env=dict(args.env),
            preopens=tuple(Preopen.parse(spec) for spec in args.dir),
            inherit_stdout=True,
            inherit_stderr=True,
        )
        limits = Limits(
            max_memory=args.max_memory,
            fuel=args.fuel,
            timeout=args.timeout,
            max_wasm_stack=args.max_wasm_stack,
            max_table_elements=args.max_table_elements,
        )
        cache = None
        if not args.no_cache:
            try:
                cache = ModuleCache(args.cache_dir)
            except CacheError as exc:
                _error(f"{exc}; running without the module cache")
        sys.stdout.flush()
        result = WasmHost(cache).run(wasm, policy, limits, origin=str(args.module))
        if result.memory_refusals:
            _note(
                f"{args.module}: memory.grow was refused {result.memory_refusals} time(s) at the "
                f"max_memory limit ({limits.max_memory})"
            )
        _note_tables(args.module, result.tables_at_cap, limits)
        return result.exit_code
    except GuestTrap as exc:
        _error(f"{args.module}: {exc}")
        _note_tables(args.module, exc.tables_at_cap, limits)
        return EXIT_TRAPPED
    except (WasmError, ValueError) as exc:
        _error(str(exc))
        return EXIT_HOST_ERROR


def _note_tables(module: Path, names: Sequence[str], limits: Any) -> None:
    for name in names:
        _note(
            f"{module}: table {name!r} is full at the table element limit "
            f"({limits.table_element_cap}, from --max-table-elements and --max-memory); "
            "table.grow past it returns -1"
        )


def _inspect(args: argparse.Namespace) -> int:
    from remora.wasm.errors import WasmError
    from remora.wasm.moduleinfo import inspect_module
    from remora.wasm.runner import read_module

    try:
        info = inspect_module(read_module(args.module), str(args.module))
    except WasmError as exc:
        _error(str(exc))
        return EXIT_HOST_ERROR
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
        return 0
    _print_text(info.to_json())
    return 0


def _print_text(doc: dict[str, Any]) -> None:
    print(f"size: {doc['size']} bytes")
    for title in ("imports", "exports", "memories"):
        print(f"{title}: {len(doc[title])}")
        for e in doc[title]:
            where = f"{e['module']}." if e["module"] else ""
            print(f"  {e['kind']:<7} {where}{e['name']}: {e['type']}")
    print(f"custom sections: {len(doc['custom_sections'])}")
    for c in doc["custom_sections"]:
        print(f"  {c['name']} ({c['size']} bytes at offset {c['offset']})")


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (`python -m remora.wasm.cli wasm run ...`), same parser as `remora`."""
    parser = argparse.ArgumentParser(prog="remora")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
