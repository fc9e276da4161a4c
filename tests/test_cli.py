import subprocess
import sys

from remora import __version__
from remora.cli import main


def test_version_prints_version(capsys: "object") -> None:
    assert main(["version"]) == 0


def test_version_via_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "remora", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"remora {__version__}"


def test_help_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "remora", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("version", "proxy", "demo"):
        assert command in out.stdout
