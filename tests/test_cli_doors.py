"""Every door of the `remora` command, tried with bad input as a careless user would.

Each subcommand gets wrong flags, missing and corrupt files, and values out of range. Whatever
happens, the user sees an error line and a non-zero exit, never a Python traceback; and a reader
that goes away (`| head -1`) never makes a command fail loudly.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remora import __version__
from remora.cli import EXIT_BROKEN_PIPE, build_parser
from tests.wasm.conftest import GUESTS, compile_wat

BAD_YAML = "static_resources: {listeners: [\n"
BAD_MESH = "services:\n  web:\n    endpoints: 3\n"
TYPO_BOOTSTRAP = "static_resorces: {}\n"


def _remora(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "remora", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
        env={**os.environ, "REMORA_TRACEBACK": ""},
    )


def _doors(tmp: Path) -> dict[str, list[str]]:
    (tmp / "bad.yaml").write_text(BAD_YAML)
    (tmp / "typo.yaml").write_text(TYPO_BOOTSTRAP)
    (tmp / "garbage.o").write_bytes(b"\x7fELF" + b"\x02\x01\x01" + b"\xff" * 200)
    (tmp / "garbage.wasm").write_bytes(b"\0asm\x01\0\0\0\xff\xff\xff")
    (tmp / "mesh").mkdir()
    (tmp / "mesh" / "mesh.yaml").write_text(BAD_MESH)
    (tmp / "file").write_text("")
    return {
        "unknown command": ["frobnicate"],
        "version with an argument": ["version", "now"],
        "unknown top-level flag": ["--verbose"],
        "proxy without -c": ["proxy"],
        "proxy missing file": ["proxy", "-c", str(tmp / "nosuch.yaml")],
        "proxy broken YAML": ["proxy", "-c", str(tmp / "bad.yaml")],
        "proxy typo": ["proxy", "-c", str(tmp / "typo.yaml"), "--validate"],
        "proxy a directory": ["proxy", "-c", str(tmp)],
        "proxy bad log level": ["proxy", "-c", str(tmp / "typo.yaml"), "--log-level", "loud"],
        "proxy watch with validate": ["proxy", "-c", str(tmp / "typo.yaml"), "--watch",
                                      "--validate"],
        "demo port out of range": ["demo", "--http-port", "99999"],
        "demo port not a number": ["demo", "--admin-port", "ninety"],
        "demo one upstream port": ["demo", "--upstream-ports", "18081"],
        "demo colliding ports": ["demo", "--http-port", "1", "--tcp-port", "1", "-l", "off"],
        "control-plane no source": ["control-plane", "--xds-address", "127.0.0.1:1"],
        "control-plane missing dir": ["control-plane", "--config-dir", str(tmp / "nope"),
                                      "--validate"],
        "control-plane file as dir": ["control-plane", "--config-dir", str(tmp / "file"),
                                      "--validate"],
        "control-plane bad mesh": ["control-plane", "--config-dir", str(tmp / "mesh"),
                                   "--validate"],
        "control-plane bad first load": ["control-plane", "--config-dir", str(tmp / "mesh"),
                                         "--xds-address", "127.0.0.1:0"],
        "control-plane bad address": ["control-plane", "--config-dir", str(tmp / "mesh"),
                                      "--xds-address", "no-port"],
        "control-plane not a repo": ["control-plane", "--git-repo", str(tmp), "--validate"],
        "control-plane bad poll": ["control-plane", "--git-repo", str(tmp), "--git-poll", "0",
                                   "--xds-address", "127.0.0.1:0"],
        "bpf no subcommand": ["bpf"],
        "bpf inspect missing": ["bpf", "inspect", str(tmp / "nosuch.o")],
        "bpf inspect corrupt": ["bpf", "inspect", str(tmp / "garbage.o")],
        "bpf inspect a directory": ["bpf", "inspect", str(tmp)],
        "bpf run missing data": ["bpf", "run", str(tmp / "garbage.o"), "p", "--data",
                                 str(tmp / "nosuch.bin")],
        "bpf run bad repeat": ["bpf", "run", str(tmp / "garbage.o"), "p", "--repeat", "many"],
        "bpf load without pin": ["bpf", "load", str(tmp / "garbage.o")],
        "bpf load bad set": ["bpf", "load", str(tmp / "garbage.o"), "--pin", str(tmp),
                             "--set", "x"],
        "wasm no subcommand": ["wasm"],
        "wasm run missing": ["wasm", "run", str(tmp / "nosuch.wasm")],
        "wasm run corrupt": ["wasm", "run", str(tmp / "garbage.wasm")],
        "wasm inspect corrupt": ["wasm", "inspect", str(tmp / "garbage.wasm")],
        "wasm bad size": ["wasm", "run", str(tmp / "garbage.wasm"), "--max-memory", "lots"],
        "wasm bad timeout": ["wasm", "run", str(tmp / "garbage.wasm"), "--timeout", "-1"],
        "wasm docker dir": ["wasm", "run", str(tmp / "garbage.wasm"), "--dir", "./data:/data"],
        "wasm bad env": ["wasm", "run", str(tmp / "garbage.wasm"), "--env", "NOEQUALS"],
    }  # fmt: skip


def test_every_subcommand_refuses_bad_input_without_a_traceback(tmp_path: Path) -> None:
    doors = _doors(tmp_path)
    # Every subcommand is tried: a new one added to remora.cli must get its doors here too.
    tried = {argv[0] for argv in doors.values()}
    assert tried >= {"proxy", "demo", "control-plane", "bpf", "wasm", "version"}
    running = {name: _remora(*argv, cwd=tmp_path) for name, argv in doors.items()}
    failures = []
    for name, process in running.items():
        _out, err = process.communicate(timeout=60)
        if process.returncode == 0 or "Traceback" in err or "Exception ignored" in err:
            failures.append(f"{name}: exit {process.returncode}\n{err}")
        elif not any(word in err for word in ("error", "usage:")):
            failures.append(f"{name}: exit {process.returncode} with no error line\n{err}")
    assert not failures, "\n\n".join(failures)


def _with_closed_stdout(*args: str) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE, deterministically
    try:
        return subprocess.run(
            [sys.executable, "-m", "remora", *args],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", ["demo --print-config", "version", "wasm inspect", "--help"])
def test_a_reader_that_goes_away_ends_the_command_quietly(command: str, tmp_path: Path) -> None:
    argv = command.split()
    if argv[0] == "wasm":
        argv.append(str(compile_wat(GUESTS / "multi.wat", tmp_path / "multi.wasm")))
    done = _with_closed_stdout(*argv)
    assert done.stderr == ""
    assert done.returncode in (0, EXIT_BROKEN_PIPE)
    if command != "--help":  # argparse drops a failed help write itself, and exits 0
        assert done.returncode == EXIT_BROKEN_PIPE


def test_version_flag_and_command_agree() -> None:
    for argv in (["--version"], ["version"]):
        done = subprocess.run(
            [sys.executable, "-m", "remora", *argv], capture_output=True, text=True, check=True
        )
        assert done.stdout == f"remora {__version__}\n"


def _parsers(
    parser: argparse.ArgumentParser, name: str = "remora"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found.extend(_parsers(sub, f"{name} {sub_name}"))
    return found


def test_every_help_has_examples_and_every_option_says_what_it_does() -> None:
    parsers = _parsers(build_parser())
    assert {name for name, _ in parsers} >= {
        "remora", "remora proxy", "remora demo", "remora control-plane", "remora bpf",
        "remora bpf inspect", "remora bpf load", "remora bpf run", "remora wasm",
        "remora wasm run", "remora wasm inspect",
    }  # fmt: skip
    missing = []
    for name, parser in parsers:
        if name == "remora version":
            continue
        if not (parser.epilog or "").startswith("examples:\n"):
            missing.append(f"{name}: --help does not end with examples")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{name}: {'/'.join(action.option_strings) or action.dest}")
            elif action.default not in (None, False, [], "", argparse.SUPPRESS) and (
                "default" not in action.help
            ):
                missing.append(f"{name}: {action.option_strings} does not show its default")
    assert not missing, "\n".join(missing)


def test_log_level_choices_are_shown_everywhere() -> None:
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if "--log-level" in action.option_strings:
                assert action.choices and "debug" in action.choices, name
    for command in ("proxy", "demo", "control-plane"):
        done = subprocess.run(
            [sys.executable, "-m", "remora", command, "--help"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "{trace,debug,info,warning,warn,error,critical,off}" in done.stdout, command
