"""`envoy.filters.http.wasm` (`envoy.extensions.filters.http.wasm.v3.Wasm`) -> a started plugin.

Compiling a Wasm filter loads and starts it: the module is compiled, `proxy_on_vm_start` and
`proxy_on_configure` run, and a module or configuration the filter refuses fails the config
(static config fails to load; an xDS update is NACKed) with the filter's name and its log lines.

Every runtime name Envoy knows (`envoy.wasm.runtime.v8`, `.wasmtime`, `.wamr`, `.wavm`,
`.null`) is accepted and runs on wasmtime. `code.remote` is refused: a sidecar fetches no code.
"""

from __future__ import annotations

import logging
import os

from envoy.extensions.filters.http.wasm.v3 import wasm_pb2 as http_wasm_pb2
from envoy.extensions.wasm.v3 import wasm_pb2
from google.protobuf import any_pb2, json_format, struct_pb2, wrappers_pb2

from remora.config import support
from remora.config.errors import ErrorCollector
from remora.proxy.wasm.plugin import SERVICES, WasmPlugin
from remora.wasm.errors import WasmError
from remora.wasm.proxywasm.vm import PluginSpec, PluginStartError, VmSpec

log = logging.getLogger("remora.proxy.wasm")

WASM_FILTER = "envoy.extensions.filters.http.wasm.v3.Wasm"
RUNTIMES = frozenset(
    f"envoy.wasm.runtime.{name}" for name in ("v8", "wasmtime", "wamr", "wavm", "null")
)

support.register(WASM_FILTER, {"config"})
support.register(
    "envoy.extensions.wasm.v3.PluginConfig",
    {"name", "root_id", "vm_config", "configuration", "fail_open", "failure_policy"},
)
support.register(
    "envoy.extensions.wasm.v3.VmConfig",
    {"vm_id", "runtime", "code", "configuration", "environment_variables", "allow_precompiled"},
)
support.register("envoy.extensions.wasm.v3.EnvironmentVariables", {"host_env_keys", "key_values"})
support.register("envoy.config.core.v3.AsyncDataSource", {"local"})
support.register("envoy.config.core.v3.DataSource", {"filename", "inline_bytes", "inline_string"})
for _wrapper in (
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
    "google.protobuf.Struct",
):
    support.register(_wrapper, set())


def configuration_bytes(value: any_pb2.Any, path: str, errors: ErrorCollector) -> bytes:
    """Envoy passes StringValue and BytesValue contents as they are, a Struct as JSON."""
    if not value.type_url:
        return b""
    type_name = value.type_url.rpartition("/")[2]
    if type_name == "google.protobuf.StringValue":
        string = wrappers_pb2.StringValue()
        value.Unpack(string)
        return string.value.encode("utf-8")
    if type_name == "google.protobuf.BytesValue":
        raw = wrappers_pb2.BytesValue()
        value.Unpack(raw)
        return raw.value
    if type_name == "google.protobuf.Struct":
        struct = struct_pb2.Struct()
        value.Unpack(struct)
        return json_format.MessageToJson(struct, indent=None).encode()
    errors.add(
        path,
        f"not supported: {path} (@type {type_name}; use StringValue, BytesValue or Struct)",
    )
    return b""


def _code(vm: wasm_pb2.VmConfig, path: str, errors: ErrorCollector) -> tuple[bytes, str] | None:
    code = vm.code
    if code.HasField("remote"):
        errors.add(f"{path}.code.remote", f"not supported: {path}.code.remote")
        return None
    if not code.HasField("local"):
        errors.add(
            f"{path}.code", "a filter needs code.local (filename, inline_bytes or inline_string)"
        )
        return None
    local = code.local
    which = local.WhichOneof("specifier")
    if which == "filename":
        try:
            with open(local.filename, "rb") as handle:
                return handle.read(), local.filename
        except OSError as exc:
            errors.add(
                f"{path}.code.local.filename", f"cannot read {local.filename}: {exc.strerror}"
            )
            return None
    if which == "inline_bytes":
        return local.inline_bytes, f"{path}.code.local.inline_bytes"
    if which == "inline_string":
        return local.inline_string.encode("latin-1", "replace"), f"{path}.code.local.inline_string"
    errors.add(f"{path}.code.local", "filename, inline_bytes or inline_string is required")
    return None


def _environment(vm: wasm_pb2.VmConfig) -> tuple[tuple[str, str], ...]:
    env = vm.environment_variables
    values: dict[str, str] = {}
    for key in env.host_env_keys:
        if key in os.environ:
            values[key] = os.environ[key]
    values.update(env.key_values)
    return tuple(sorted(values.items()))


def _fail_open(plugin: wasm_pb2.PluginConfig) -> bool:
    policy = plugin.failure_policy
    if policy == wasm_pb2.FAIL_OPEN:
        return True
    if policy in (wasm_pb2.FAIL_CLOSED, wasm_pb2.FAIL_RELOAD):
        return False
    return bool(plugin.fail_open)


def compile_wasm_filter(
    typed: http_wasm_pb2.Wasm, filter_name: str, path: str, errors: ErrorCollector
) -> WasmPlugin | None:
    before = len(errors.errors)
    plugin = typed.config
    ppath = f"{path}.config"
    vm = plugin.vm_config
    vpath = f"{ppath}.vm_config"
    if not plugin.HasField("vm_config"):
        errors.add(vpath, "a Wasm filter needs vm_config (vm_config.code names the module)")
        return None
    runtime = vm.runtime or "envoy.wasm.runtime.v8"
    if runtime not in RUNTIMES:
        errors.add(
            f"{vpath}.runtime",
            f"unknown runtime {runtime!r} (one of {', '.join(sorted(RUNTIMES))})",
        )
    code = _code(vm, vpath, errors)
    vm_configuration = configuration_bytes(vm.configuration, f"{vpath}.configuration", errors)
    configuration = configuration_bytes(plugin.configuration, f"{ppath}.configuration", errors)
    if code is None or len(errors.errors) > before:
        return None
    name = plugin.name or filter_name or "wasm"
    vm_spec = VmSpec(
        vm_id=vm.vm_id,
        code=code[0],
        origin=code[1],
        vm_configuration=vm_configuration,
        environment=_environment(vm),
    )
    spec = PluginSpec(name, plugin.root_id, configuration, _fail_open(plugin))
    try:
        return WasmPlugin(vm_spec, spec, runtime.rpartition(".")[2], SERVICES)
    except (PluginStartError, WasmError) as exc:
        lines = SERVICES.recent.get(name)
        logged = f" (its log: {' | '.join(lines)})" if lines else ""
        errors.add(path, f"wasm filter {name}: {exc}{logged}")
        return None
