"""Wasm filters for the proxy's tests: C guests built here, and the AssemblyScript SDK's
filters that `make proxywasm` builds into examples/build/proxy-wasm/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
C_GUESTS = ROOT / "tests" / "wasm" / "proxywasm" / "guests"
SDK_BUILD = ROOT / "examples" / "build" / "proxy-wasm"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def build_c(name: str, out_dir: Path) -> Path:
    clang = shutil.which("clang")
    if clang is None:
        pytest.fail("clang is required to build the C filters (make apt installs it)")
    out = out_dir / f"{name}.wasm"
    if not out.exists():
        subprocess.run(
            [clang, "--target=wasm32-wasi", "--sysroot=/usr", "-mexec-model=reactor", "-O2",
             "-Wall", "-Werror", str(C_GUESTS / f"{name}.c"), "-o", str(out)],
            check=True,
        )  # fmt: skip
    return out


def sdk_filter(name: str) -> Path:
    path = SDK_BUILD / f"{name}.wasm"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make proxywasm` builds the SDK filters")
    return path


def wasm_filter(
    path: Path,
    name: str = "",
    configuration: str | None = None,
    root_id: str = "",
    vm_id: str = "",
    fail_open: bool = False,
    **vm: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name or path.stem,
        "root_id": root_id,
        "vm_config": {
            "vm_id": vm_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(path)}},
            **vm,
        },
    }
    if configuration is not None:
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration,
        }
    if fail_open:
        config["fail_open"] = True
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {"@type": WASM_TYPE, "config": config},
    }
