"""Every command shown in the README and docs/ runs, as shown, on this checkout.

A command is a line in a fenced block that starts with one of the project's programs (`remora`,
`.venv/bin/remora`, `make`, `curl`, `python`, optionally after `$ ` or `sudo `). Each one is
listed in `COMMANDS` with how it is run: executed and checked, served and stopped, run against
the demo, or covered by a named test file. A synopsis (`remora bpf run OBJ PROG [--data FILE]`)
is checked against the real parser instead: every option it shows must exist. A command added to
the docs without an entry here fails `test_every_documented_command_is_accounted_for`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from remora.cli import build_parser
from tests.wasm.conftest import GUESTS, compile_c

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_COMMAND = re.compile(
    r"^(\$ )?(sudo )?(\.venv/bin/)?(remora|make|curl|python3?|\.venv/bin/python)(\s|$)"
)
_SHELL_BLOCKS = {"", "sh", "bash", "console", "shell"}


@dataclass(frozen=True)
class Shown:
    """A command as a doc shows it, with the output lines printed under it (if any)."""

    doc: str
    line: int
    text: str
    output: tuple[str, ...]

    @property
    def command(self) -> str:
        text = self.text.removeprefix("$ ")
        return re.sub(r"\s+#.*$", "", text).strip()

    @property
    def synopsis(self) -> bool:
        return bool(re.search(r"\[--|\(--| [A-Z]{2,}[A-Z.]*( |$)", self.command))


def shown_commands() -> list[Shown]:
    found: list[Shown] = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        block: list[tuple[int, str]] | None = None
        language = ""
        for number, line in enumerate(lines, 1):
            if line.startswith("```"):
                if block is None:
                    block, language = [], line[3:].strip()
                    continue
                if language in _SHELL_BLOCKS:
                    found.extend(_commands_in(doc.name, block))
                block = None
                continue
            if block is not None:
                block.append((number, line))
    return found


def _commands_in(doc: str, block: list[tuple[int, str]]) -> Iterator[Shown]:
    prompted = any(line.startswith("$ ") for _, line in block)
    for index, (number, line) in enumerate(block):
        if prompted and not line.startswith("$ "):
            continue
        if not _COMMAND.match(line.strip()):
            continue
        output: list[str] = []
        if prompted:
            for _, after in block[index + 1 :]:
                if after.startswith("$ "):
                    break
                output.append(after)
        yield Shown(doc, number, line.strip(), tuple(output))


# -- how each command runs --------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Executed in the checkout; exit status, stdout/stderr fragments and shown output checked."""

    expect_exit: int = 0
    expect: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None  # prepares the working directory
    in_tmp: bool = False  # run in the temporary directory that setup filled
    privileged: bool = False
    measured: bool = False  # shown output holds timings: compare the labels, not the figures


@dataclass(frozen=True)
class Serve:
    """Started, seen listening on `port`, stopped with SIGTERM; must exit 0 without a traceback."""

    port: int
    also: tuple[int, ...] = ()


@dataclass(frozen=True)
class WithDemo:
    """Run while `remora demo` serves its defaults (the commands under 'With the demo running')."""

    expect: tuple[str, ...] = ()


@dataclass(frozen=True)
class Elsewhere:
    """Run by another part of the suite or by CI; `where` must exist and mention `mentions`."""

    where: str
    mentions: str
    why: str = field(default="")


def _bad_bootstrap(directory: Path) -> None:
    (directory / "bad.yaml").write_text(
        "static_resources:\n  clusters:\n  - name: backend\n    conect_timeout: 1s\n"
    )


def _spin_wasm(directory: Path) -> None:
    compile_c(GUESTS / "spin.c", directory / "spin.wasm")


COMMANDS: dict[str, Run | Serve | WithDemo | Elsewhere] = {
    # README: quickstart
    "make run": Elsewhere("tests/demo/test_cli.py", '"demo"', "make run is `remora demo`"),
    ".venv/bin/remora proxy --config v1.yaml": Elsewhere(
        "tests/proxy/test_hot_restart.py", "--restart-epoch", "hot restart, real epochs"
    ),
    ".venv/bin/remora proxy --config v2.yaml --restart-epoch 1 --drain-time-s 30": Elsewhere(
        "tests/proxy/test_hot_restart.py", "--restart-epoch", "hot restart, real epochs"
    ),
    "remora proxy -c v1.yaml": Elsewhere(
        "tests/proxy/test_hot_restart.py", "--restart-epoch", "hot restart, real epochs"
    ),
    "remora proxy -c v2.yaml --restart-epoch 1 --drain-time-s 30": Elsewhere(
        "tests/proxy/test_hot_restart.py", "--restart-epoch", "hot restart, real epochs"
    ),
    "make test": Elsewhere(".ci/run", "make test", "CI runs it on a clean clone"),
    "curl -s http://127.0.0.1:10000/hello": WithDemo(('"upstream": "demo-', '"path": "/hello"')),
    "curl -s http://127.0.0.1:9901/stats | grep upstream_rq_2xx": WithDemo(("upstream_rq_2xx",)),
    "curl -s http://127.0.0.1:9901/stats/prometheus | grep rq_total": WithDemo(
        ("envoy_cluster_upstream_rq_total",)
    ),
    # docs/http2.md
    "curl --http2-prior-knowledge http://127.0.0.1:10000/": WithDemo(('"upstream": "demo-',)),
    # README: your own config
    ".venv/bin/remora proxy --config examples/front-proxy.yaml": Serve(10000, (9901,)),
    ".venv/bin/remora proxy --config examples/front-proxy.yaml --validate": Run(
        expect=("configuration 'examples/front-proxy.yaml' OK",)
    ),
    ".venv/bin/remora proxy --config examples/front-proxy.yaml --watch": Serve(10000, (9901,)),
    ".venv/bin/remora proxy --config examples/front-proxy.yaml --concurrency 2": Serve(
        10000, (9901,)
    ),
    # README and docs/xds.md: the control plane
    ".venv/bin/remora control-plane --config-dir examples/mesh --validate": Run(
        expect=("configuration 'examples/mesh' OK: 3 services",)
    ),
    ".venv/bin/remora control-plane --config-dir examples/mesh --xds-address 127.0.0.1:18000": (
        Serve(18000)
    ),
    ".venv/bin/remora control-plane --config-dir examples/mesh --xds-address 127.0.0.1:18000 "
    "--admin-address 127.0.0.1:18001": Serve(18000, (18001,)),
    # README: wasm and bpf, on what `make examples` builds
    "make examples": Run(),
    # docs/accel.md
    "make accel": Run(),
    ".venv/bin/remora wasm run examples/build/guest.wasm --dir ./examples::/data --fuel 1000000 "
    "--max-memory 16MiB -- arg1": Run(
        expect=("hello from a sandboxed guest", "arg 1: arg1", "/data/mesh")
    ),
    ".venv/bin/remora wasm inspect examples/build/guest.wasm": Run(
        expect=("wasi_snapshot_preview1.fd_write",)
    ),
    ".venv/bin/remora bpf inspect examples/build/prog.bpf.o": Run(
        expect=("xdp_prog", "packets_by_protocol", "__u32 -> __u64", "const __u32 = 2")
    ),
    "sudo .venv/bin/remora bpf run examples/build/prog.bpf.o xdp_prog --data "
    "examples/build/packet.bin --repeat 1000": Run(
        expect=("xdp_prog: retval 2, average",), privileged=True
    ),
    # docs/bpf.md: tracing needs a live process making the events
    "sudo remora bpf trace trace.bpf.o --type event --count 2 --set target_tgid=14517": (
        Elsewhere("tests/bpf/test_trace.py", "--count", "events from a live process")
    ),
    # docs/configuration.md
    "remora proxy --validate --config bad.yaml": Run(
        expect_exit=1, setup=_bad_bootstrap, in_tmp=True
    ),
    # docs/wasm.md
    "remora wasm run --timeout 0.2 spin.wasm": Run(expect_exit=134, setup=_spin_wasm, in_tmp=True),
    ".venv/bin/python bench/wasm/bench_calls.py": Elsewhere(
        "tests/wasm/test_bench_smoke.py", "bench_calls.py", "a smoke run at a small size"
    ),
    ".venv/bin/python bench/wasm/bench_cache.py": Run(
        expect=("recompilations on second start: 0",), measured=True
    ),
    ".venv/bin/python -m pytest tests/wasm -q": Elsewhere(".ci/run", "make test", "in make test"),
    # docs/bpf.md
    ".venv/bin/python -m pytest tests/bpf": Elsewhere(".ci/run", "make test", "in make test"),
    # docs/ca.md
    ".venv/bin/remora control-plane --config-dir examples/mesh-mtls --validate": Run(
        expect=(
            "configuration 'examples/mesh-mtls' OK: 2 services (backend, frontend), "
            "0 raw resources, 2 identities",
        )
    ),
    "remora proxy -c backend-sidecar.yaml --identity-ca https://127.0.0.1:18002 "
    "--identity-token-file backend.token --identity-ca-bundle ca/bundle.pem": Elsewhere(
        "tests/xds/test_mesh_identity_e2e.py", "--identity-ca-bundle", "two real sidecars"
    ),
}


def test_every_documented_command_is_accounted_for() -> None:
    shown = [s for s in shown_commands() if not s.synopsis]
    unknown = [f"{s.doc}:{s.line}: {s.command}" for s in shown if s.command not in COMMANDS]
    assert not unknown, "add these to COMMANDS in tests/test_docs.py:\n" + "\n".join(unknown)
    stale = set(COMMANDS) - {s.command for s in shown}
    assert not stale, f"no longer in the docs: {sorted(stale)}"


def _parser_for(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or word not in subparsers[0].choices:
            break
        parser = subparsers[0].choices[word]
    return parser


def test_every_synopsis_matches_the_parser() -> None:
    synopses = [s for s in shown_commands() if s.synopsis]
    assert len(synopses) >= 5
    wrong = []
    for shown in synopses:
        words = shown.command.split()
        if words[0] in ("sudo", ".venv/bin/remora", "remora"):
            words = words[1:] if words[0] != "sudo" else words[2:]
        parser = _parser_for(words)
        known = {option for action in parser._actions for option in action.option_strings}
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", shown.command):
            if flag not in known:
                wrong.append(f"{shown.doc}:{shown.line}: {flag} is not an option of {parser.prog}")
    assert not wrong, "\n".join(wrong)


def _absolute(command: str) -> str:
    """The checkout's venv wherever the command runs; we are root already where sudo is shown."""
    command = command.removeprefix("sudo ")
    return re.sub(r"(?<![\w/])\.venv/bin/", f"{ROOT}/.venv/bin/", command)


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", _absolute(command)],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _cases(kind: type) -> list[Shown]:
    seen: dict[str, Shown] = {}
    for shown in shown_commands():
        if not shown.synopsis and isinstance(COMMANDS.get(shown.command), kind):
            seen.setdefault(shown.command, shown)
    return sorted(seen.values(), key=lambda s: (s.command != "make examples", s.doc, s.line))


@pytest.mark.parametrize("shown", _cases(Run), ids=lambda s: f"{s.doc}:{s.line}")
def test_documented_command_runs(shown: Shown, tmp_path: Path) -> None:
    how = COMMANDS[shown.command]
    assert isinstance(how, Run)
    if how.privileged and os.geteuid() != 0:
        from tests.conftest import require_privileged

        require_privileged("the documented command uses sudo")
    if shown.command.startswith(".venv/bin/remora") and "examples/build/" in shown.command:
        assert _shell("make -s examples", ROOT).returncode == 0
    if how.setup is not None:
        how.setup(tmp_path)
    done = _shell(shown.command, tmp_path if how.in_tmp else ROOT)
    assert done.returncode == how.expect_exit, done.stderr
    text = done.stdout + done.stderr
    assert "Traceback" not in text
    for fragment in how.expect:
        assert fragment in text, (fragment, text)
    for line in shown.output:  # what the doc shows under `$ command`, modulo addresses
        if not line.strip() or re.search(r"\+0x[0-9a-f]+$", line):
            continue
        if how.measured:
            label = re.split(r"\s\d", line, maxsplit=1)[0].strip()
            assert label in text, (label, text)
        else:
            assert line.rstrip() in text.splitlines(), (line, text)


def _wait_port(port: int, process: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


@contextmanager
def _serving(command: str, ports: tuple[int, ...]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        ["bash", "-c", f"exec {_absolute(command)}"], cwd=ROOT, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for port in ports:
            _wait_port(port, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("shown", _cases(Serve), ids=lambda s: f"{s.doc}:{s.line}")
def test_documented_server_starts_and_stops(shown: Shown) -> None:
    how = COMMANDS[shown.command]
    assert isinstance(how, Serve)
    with _serving(shown.command, (how.port, *how.also)) as process:
        pass
    assert process.returncode == 0
    assert process.stderr is not None


def test_documented_demo_commands() -> None:
    cases = _cases(WithDemo)
    assert cases
    with _serving("remora demo", (10000, 9901)):
        for shown in cases:
            how = COMMANDS[shown.command]
            assert isinstance(how, WithDemo)
            done = _shell(shown.command, ROOT)
            assert done.returncode == 0, (shown.command, done.stderr)
            for fragment in how.expect:
                assert fragment in done.stdout, (shown.command, done.stdout)


def test_commands_run_elsewhere_are_there() -> None:
    for command, how in COMMANDS.items():
        if isinstance(how, Elsewhere):
            where = ROOT / how.where
            assert where.is_file(), (command, how.where)
            assert how.mentions in where.read_text(), (command, how.where, how.mentions)


def test_the_generated_section_of_configuration_md_is_one_well_formed_block() -> None:
    from remora.config.reference import BEGIN, END, render

    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc.count(BEGIN) == 1 and doc.count(END) == 1
    start, end = doc.index(BEGIN), doc.index(END)
    assert start < end
    assert doc[start : end + len(END)] == render().strip()
