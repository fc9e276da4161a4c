"""Run a script in a private network namespace (`unshare -n`), for tests that attach to
interfaces: what it does to lo or a veth pair stays there. The script prints one JSON object,
which is returned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_in_netns(script: str, *args: str) -> Any:
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed for a private network namespace"
    out = subprocess.run(
        [unshare, "-n", sys.executable, "-c", script, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout)
