"""Install what the suite needs on a fresh machine, and nothing into remora's runtime deps.

Debian packages (the peers and wrk) go in with apt-get when missing; the plotting library goes
into the running venv with pip, pinned, only when the suite is run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# Python packages only the benchmark needs (not remora's runtime): module name -> pip requirement.
PYTHON_DEPS = {"matplotlib": "matplotlib==3.11.2"}

# Debian package -> the file that shows it is installed.
APT_DEPS = {
    "wrk": "/usr/bin/wrk",
    "nginx-light": "/usr/sbin/nginx",
    "libnginx-mod-stream": "/usr/lib/nginx/modules/ngx_stream_module.so",
    "haproxy": "/usr/sbin/haproxy",
    "caddy": "/usr/bin/caddy",
    "util-linux": "/usr/bin/taskset",
}


class DependencyError(Exception):
    """Something the suite needs is missing and could not be installed."""


def missing_apt(packages: Iterable[str]) -> list[str]:
    return [p for p in packages if not Path(APT_DEPS[p]).exists()]


def ensure_apt(packages: Iterable[str], log: Callable[[str], None]) -> None:
    missing = missing_apt(packages)
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DependencyError(f"missing Debian packages {missing}; install them with apt-get")
    log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        if subprocess.run(argv, env=env, check=False).returncode != 0:
            raise DependencyError(f"{' '.join(argv)} failed")
    still = missing_apt(missing)
    if still:
        raise DependencyError(f"still missing after apt-get: {still}")


def ensure_python(log: Callable[[str], None]) -> None:
    wanted = [req for mod, req in PYTHON_DEPS.items() if importlib.util.find_spec(mod) is None]
    if not wanted:
        return
    log(f"pip install {' '.join(wanted)} (benchmark-only)")
    argv = [sys.executable, "-m", "pip", "install", "-q", *wanted]
    if subprocess.run(argv, check=False).returncode != 0:
        raise DependencyError(f"{' '.join(argv)} failed")
    importlib.invalidate_caches()
