from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from remora.wasm.errors import LinkError
from remora.wasm.runner import WasmHost

UNCLOSED = """
import sys
from remora.wasm.limits import Limits
from remora.wasm.runner import WasmHost
wasm = open(sys.argv[1], "rb").read()
limits = Limits(max_memory=int(sys.argv[2]) or None)   # a cap means host-owned memories
host = WasmHost()
guest = host.instantiate(wasm, limits=limits)      # never closed
guest.run_start()
host.instantiate(wasm, limits=limits)              # never even run
print(host.run(wasm, limits=limits).stdout.decode(), end="")
"""


def test_unclosed_guests_do_not_crash_interpreter_exit(guest_path: Callable[[str], Path]) -> None:
    """wasmtime frees output callbacks on its own thread; at exit that must finish in time.

    Without the exit hook this crashed about half the time ("panicked ... cannot unwind").
    """
    for cap in (0, 8 << 20, 0, 8 << 20, 0):
        proc = subprocess.run(
            [sys.executable, "-c", UNCLOSED, str(guest_path("hello")), str(cap)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0
        assert proc.stdout == "argc=0\nWHO=(unset)\n"
        assert "panicked" not in proc.stderr


def test_missing_import_is_a_link_error(guest: Callable[[str], bytes]) -> None:
    with pytest.raises(LinkError, match="host::add"):
        WasmHost().instantiate(guest("compute"))


def test_missing_export(guest: Callable[[str], bytes]) -> None:
    with (
        WasmHost().instantiate(guest("grow_bomb")) as g,
        pytest.raises(LinkError, match="no exported function 'nope'"),
    ):
        g.call("nope")


def test_close_is_idempotent(guest: Callable[[str], bytes]) -> None:
    g = WasmHost().instantiate(guest("grow_bomb"))
    g.close()
    g.close()
