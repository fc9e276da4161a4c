"""One Proxy-Wasm VM: a module instance, its contexts, and every callback into it.

Lifecycle, as in Envoy: `_initialize` (or `_start`), then per plugin `proxy_on_context_create(root,
0)`, `proxy_on_vm_start` and `proxy_on_configure`; per stream `proxy_on_context_create(id, root)`
and the stream's callbacks; at stream end `proxy_on_log`, `proxy_on_done` and `proxy_on_delete`.
Context ids are per VM: the first root is 1 and streams count up from there.

Every callback runs under a deadline (epoch interruption, reset before each outermost call), so a
filter stuck in a loop costs one deadline of the event loop and no more. A callback that traps,
exits, runs out of time or memory, or makes a host call fail in a way the ABI cannot report,
marks the VM failed: `PluginFailure` is raised to the caller (which fails the stream closed or
open) and the VM takes no further calls; the owner makes a new one for later streams.

The VM is sans-IO towards the proxy: timers, HTTP calls and logs go through `HostServices`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import wasmtime

from remora.wasm.errors import (
    DeadlineExceededError,
    FuelExhaustedError,
    GuestTrap,
    LinkError,
    MemoryLimitError,
    WasmError,
)
from remora.wasm.fastcall import FastFunc, GenericFunc, bind_call, host_func
from remora.wasm.limits import Limits
from remora.wasm.proxywasm import hostcalls, wasi
from remora.wasm.proxywasm.abi import (
    ABI_MARKERS,
    SUPPORTED_ABIS,
    BufferType,
    LogLevel,
    MapType,
    Pairs,
    Status,
    WasiErrno,
)
from remora.wasm.proxywasm.contexts import Context, PropertyLookup, RootContext, StreamContext
from remora.wasm.proxywasm.memory import GuestMemory
from remora.wasm.proxywasm.metrics import MetricFactory, MetricTable, memory_metrics
from remora.wasm.proxywasm.shared import PROCESS_SHARED, SharedState
from remora.wasm.runner import Guest, WasmHost
from remora.wasm.sandbox import SandboxPolicy

log = logging.getLogger("remora.wasm.proxywasm")

# Long enough for any honest callback (a JSON body of megabytes parses in milliseconds), short
# enough that a filter stuck in a loop stalls the proxy's other streams only briefly.
DEFAULT_CALLBACK_DEADLINE = 0.25
DEFAULT_MAX_MEMORY = 128 << 20

_KINDS = {"i": wasmtime.ValType.i32(), "I": wasmtime.ValType.i64()}


class PluginStartError(WasmError):
    """The module could not be loaded or refused its configuration; names the plugin."""


class PluginFailure(Exception):
    """A callback failed and the VM is gone; `reason` says how (for logs and stats)."""

    def __init__(self, plugin: str, callback: str, reason: str, kind: str) -> None:
        super().__init__(f"wasm plugin {plugin}: {callback} failed: {reason}")
        self.plugin = plugin
        self.callback = callback
        self.reason = reason
        self.kind = kind  # "trap", "deadline", "fuel", "memory", "exit" or "host"


class Cancellable(Protocol):
    def cancel(self) -> None: ...


@dataclass
class HttpCallResponse:
    headers: Pairs
    body: bytes
    trailers: Pairs


class HostServices(Protocol):
    """What the VM needs from the proxy around it."""

    def log(self, plugin: str, level: int, message: str) -> None: ...
    def log_level(self) -> int: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...
    def call_soon(self, callback: Callable[[], None]) -> None: ...

    def http_call(
        self,
        cluster: str,
        headers: Pairs,
        body: bytes,
        trailers: Pairs,
        timeout: float,
        done: Callable[[HttpCallResponse | None], None],
    ) -> bool:
        """Start a call; False for an unknown cluster. `done` runs later, never inside."""
        ...

    def metric(self, kind: int, name: str) -> Any: ...
    def property(self, path: tuple[bytes, ...]) -> bytes | None: ...


@dataclass(frozen=True)
class VmSpec:
    """What makes two plugins share a VM: Envoy's vm_id, the code and the VM's own config."""

    vm_id: str
    code: bytes
    origin: str  # where the code came from, for messages
    vm_configuration: bytes = b""
    environment: tuple[tuple[str, str], ...] = ()
    max_memory: int = DEFAULT_MAX_MEMORY
    callback_deadline: float = DEFAULT_CALLBACK_DEADLINE

    @property
    def key(self) -> tuple[Any, ...]:
        return (
            self.vm_id,
            hashlib.sha256(self.code).digest(),
            self.vm_configuration,
            self.environment,
            self.max_memory,
            self.callback_deadline,
        )


@dataclass(frozen=True)
class PluginSpec:
    name: str
    root_id: str
    configuration: bytes = b""
    fail_open: bool = False


def module_abi(module: wasmtime.Module) -> str:
    """The ABI the module's marker export names; refuses modules without a supported one."""
    exports = {e.name for e in module.exports}
    found = [version for marker, version in ABI_MARKERS.items() if marker in exports]
    if not found:
        raise LinkError(
            "not a Proxy-Wasm module: it exports no proxy_abi_version_* marker "
            f"(remora supports ABI {', '.join(sorted(SUPPORTED_ABIS))})"
        )
    supported = [v for v in found if v in SUPPORTED_ABIS]
    if not supported:
        raise LinkError(
            f"Proxy-Wasm ABI {found[0]} is not supported (remora supports "
            f"{', '.join(sorted(SUPPORTED_ABIS))}); rebuild the filter with a current SDK"
        )
    return max(supported)


def _func_type(params: str, results: str) -> wasmtime.FuncType:
    return wasmtime.FuncType([_KINDS[c] for c in params], [_KINDS[c] for c in results])


def _signature(ty: wasmtime.FuncType) -> tuple[str, str] | None:
    letters = {"i32": "i", "i64": "I"}
    params = [letters.get(str(t)) for t in ty.params]
    results = [letters.get(str(t)) for t in ty.results]
    if None in params or None in results:
        return None
    return "".join(p for p in params if p), "".join(r for r in results if r)


def _unimplemented(results: str, status: int) -> Callable[..., Any]:
    if not results:
        return lambda *_args: None
    if len(results) == 1:
        return lambda *_args: status
    return lambda *_args: [status] * len(results)


class PluginVm:
    def __init__(
        self,
        spec: VmSpec,
        services: HostServices,
        host: WasmHost | None = None,
        shared: SharedState = PROCESS_SHARED,
        metrics: MetricFactory | None = None,
        label: str = "",
    ) -> None:
        self.spec = spec
        self.vm_id = spec.vm_id
        self.vm_configuration = spec.vm_configuration
        self.environment = dict(spec.environment)
        self.services = services
        self.shared = shared
        self.label = label or spec.vm_id or spec.origin
        self.metrics = MetricTable(metrics if metrics is not None else memory_metrics)
        self.contexts: dict[int, Context] = {}
        self.roots: dict[tuple[str, str], RootContext] = {}
        self.plugins: dict[int, PluginSpec] = {}
        self.effective: Context | None = None
        self.failed: PluginFailure | None = None
        self.call_status: tuple[int, bytes] = (0, b"")
        self._next_id = 1
        self._depth = 0
        self._acted: list[StreamContext] = []
        self._timers: dict[int, Cancellable] = {}
        self._next_call = 1
        self._exports: dict[str, FastFunc | GenericFunc | None] = {}
        self._closed = False
        self._limits = Limits(max_memory=spec.max_memory, timeout=spec.callback_deadline)
        host = host or WasmHost()
        try:
            loaded = host.load(spec.code, self._limits, spec.origin)
        except WasmError as exc:
            raise PluginStartError(f"{spec.origin}: {exc}") from None
        self.abi = self._check_abi(loaded.module)
        self._ticks = loaded.handle.ticker.ticks_for(spec.callback_deadline)
        self._host_calls = hostcalls.HostCalls(self)
        self._wasi_calls = wasi.WasiCalls(self)
        try:
            self.guest = Guest(
                loaded.handle,
                loaded.module,
                policy=SandboxPolicy(),
                limits=self._limits,
                definers=[self._definer(loaded.module)],
                wasi=False,
                initialize=False,
            )
        except WasmError as exc:
            raise PluginStartError(f"{spec.origin}: {exc}") from None
        memory = self.guest.memory
        if memory is None:
            self.guest.close()
            raise PluginStartError(f"{spec.origin}: the module exports no memory")
        allocate = self._export("proxy_on_memory_allocate") or self._export("malloc")
        self.memory = GuestMemory(self.guest.store, memory, allocate)
        try:
            if self._export("_initialize") is not None:
                self._invoke("_initialize")
                if self._export("main") is not None:
                    self._invoke("main", 0, 0)
            elif self._export("_start") is not None:
                self._invoke("_start")
        except PluginFailure as exc:
            self.close()
            raise PluginStartError(f"{spec.origin}: start-up failed: {exc.reason}") from None

    def _check_abi(self, module: wasmtime.Module) -> str:
        try:
            return module_abi(module)
        except LinkError as exc:
            raise PluginStartError(f"{self.spec.origin}: {exc}") from None

    # -- linking ---------------------------------------------------------------------------
    def _definer(
        self, module: wasmtime.Module
    ) -> Callable[[wasmtime.Linker, wasmtime.Store], None]:
        host_table = self._host_calls.table()
        wasi_table = self._wasi_calls.table()

        def define(linker: wasmtime.Linker, store: wasmtime.Store) -> None:
            seen: set[tuple[str, str]] = set()
            for imp in module.imports:
                name = imp.name or ""
                where = f"{imp.module}.{name}"
                if (imp.module, name) in seen:
                    continue
                seen.add((imp.module, name))
                ty = imp.type
                if not isinstance(ty, wasmtime.FuncType):
                    raise LinkError(f"import {where}: only functions can be imported by a filter")
                signature = _signature(ty)
                if imp.module == "env":
                    table, signatures, missing = (
                        host_table,
                        hostcalls.SIGNATURES,
                        Status.UNIMPLEMENTED,
                    )
                elif imp.module in wasi.WASI_MODULES:
                    table, signatures, missing = wasi_table, wasi.SIGNATURES, WasiErrno.NOSYS
                else:
                    raise LinkError(f"import {where}: unknown module {imp.module!r}")
                expected = signatures.get(name)
                if expected is not None and signature != expected:
                    raise LinkError(
                        f"import {where} has type {ty}, not the ABI's "
                        f"({', '.join(expected[0])}) -> ({', '.join(expected[1])})"
                    )
                if signature is None:
                    raise LinkError(
                        f"import {where}: type {ty} uses values a host call cannot take"
                    )
                fn = table[name] if expected is not None else _unimplemented(signature[1], missing)
                linker.define(store, imp.module, name, host_func(store, ty, fn, where))

        return define

    def _export(self, name: str) -> FastFunc | GenericFunc | None:
        if name in self._exports:
            return self._exports[name]
        item = self.guest.instance.exports(self.guest.store).get(name)
        bound = None
        if isinstance(item, wasmtime.Func):
            bound = bind_call(self.guest.store, item, translate=self._translate)
        self._exports[name] = bound
        return bound

    def _translate(self, exc: Exception) -> Exception:
        assert isinstance(exc, wasmtime.Trap | wasmtime.WasmtimeError)
        return self.guest.translate(exc)

    # -- calling in ------------------------------------------------------------------------
    def _invoke(self, name: str, *args: int) -> Any:
        if self.failed is not None:
            raise self.failed
        fn = self._export(name)
        if fn is None:
            return None
        if self._depth == 0:
            self.guest.store.set_epoch_deadline(self._ticks)
        self._depth += 1
        try:
            return fn(*args)
        except Exception as exc:  # a trap, a limit, proc_exit, or a host call that broke
            self._fail(name, exc)
            assert self.failed is not None
            raise self.failed from None
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._notify_acted()

    def _fail(self, callback: str, exc: Exception) -> None:
        if isinstance(exc, DeadlineExceededError):
            kind, reason = "deadline", f"ran past its {self.spec.callback_deadline:g} s deadline"
        elif isinstance(exc, FuelExhaustedError):
            kind, reason = "fuel", "ran out of fuel"
        elif isinstance(exc, MemoryLimitError):
            kind, reason = "memory", f"hit the memory limit ({exc})"
        elif isinstance(exc, wasi.GuestExit):
            kind, reason = "exit", str(exc)
        elif isinstance(exc, GuestTrap | wasmtime.Trap):
            kind, reason = "trap", f"trapped: {exc}"
        else:
            kind, reason = "host", f"{type(exc).__name__}: {exc}"
        self.failed = PluginFailure(self.label, callback, reason, kind)
        self.services.log(self.label, LogLevel.ERROR, f"{callback} failed: {reason}")
        self._stop_timers()

    def _with(self, context: Context, name: str, *args: int) -> Any:
        saved = self.effective
        self.effective = context
        try:
            return self._invoke(name, *args)
        finally:
            self.effective = saved

    def _new_id(self) -> int:
        context_id = self._next_id
        self._next_id += 1
        return context_id

    # -- plugins (root contexts) -----------------------------------------------------------
    def add_plugin(self, plugin: PluginSpec) -> RootContext:
        """Create the plugin's root context and start it; PluginStartError if it refuses."""
        key = (plugin.name, plugin.root_id)
        existing = self.roots.get(key)
        if existing is not None and existing.configuration == plugin.configuration:
            return existing
        root = RootContext(self._new_id(), plugin.root_id, configuration=plugin.configuration)
        self.contexts[root.id] = root
        self.plugins[root.id] = plugin
        try:
            self._with(root, "proxy_on_context_create", root.id, 0)
            if self._with(root, "proxy_on_vm_start", root.id, len(self.vm_configuration)) == 0:
                raise PluginStartError(f"wasm plugin {plugin.name}: proxy_on_vm_start failed")
            if self._with(root, "proxy_on_configure", root.id, len(plugin.configuration)) == 0:
                raise PluginStartError(f"wasm plugin {plugin.name}: proxy_on_configure failed")
        except PluginFailure as exc:
            raise PluginStartError(
                f"wasm plugin {plugin.name}: {exc.callback} failed: {exc.reason}"
            ) from None
        self.roots[key] = root
        return root

    # -- streams ---------------------------------------------------------------------------
    def new_stream(self, root: RootContext, properties: PropertyLookup | None) -> StreamContext:
        stream = StreamContext(self._new_id(), root.root_id, parent=root, properties=properties)
        self.contexts[stream.id] = stream
        self._with(stream, "proxy_on_context_create", stream.id, root.id)
        return stream

    def call(self, context: Context, name: str, *args: int) -> int:
        """A stream callback; missing exports behave as CONTINUE (0)."""
        result = self._with(context, name, context.id, *args)
        return 0 if result is None else int(result)

    def finish_stream(self, stream: StreamContext) -> None:
        """on_log, on_done, then on_delete (unless the guest defers it with proxy_done)."""
        if stream.deleted or self.failed is not None:
            self._forget(stream)
            return
        self._with(stream, "proxy_on_log", stream.id)
        done = self._with(stream, "proxy_on_done", stream.id)
        if done is None or done:
            self.context_done(stream)
        else:
            stream.pending_done = True

    def context_done(self, context: Context) -> None:
        context.pending_done = False
        if context.deleted:
            return
        context.deleted = True
        try:
            self._with(context, "proxy_on_delete", context.id)
        finally:
            self._forget(context)

    def _forget(self, context: Context) -> None:
        context.deleted = True
        self.contexts.pop(context.id, None)
        context.maps.clear()
        context.buffers.clear()

    def stream_acted(self, stream: StreamContext) -> None:
        self._acted.append(stream)

    def _notify_acted(self) -> None:
        acted, self._acted = self._acted, []
        for stream in acted:
            if stream.on_actions is not None:
                self.services.call_soon(stream.on_actions)

    # -- timers, calls, queues -------------------------------------------------------------
    def set_tick_period(self, root: RootContext, period_ms: int) -> None:
        root.tick_period_ms = period_ms
        timer = self._timers.pop(root.id, None)
        if timer is not None:
            timer.cancel()
        if period_ms and self.failed is None and not self._closed:
            self._timers[root.id] = self.services.call_later(
                period_ms / 1000, lambda: self._tick(root)
            )

    def _tick(self, root: RootContext) -> None:
        self._timers.pop(root.id, None)
        if self.failed is not None or self._closed or root.deleted:
            return
        try:
            self._with(root, "proxy_on_tick", root.id)
        except PluginFailure:
            return
        if root.tick_period_ms and root.id not in self._timers:
            self.set_tick_period(root, root.tick_period_ms)

    def _stop_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def http_call(
        self,
        root: RootContext,
        cluster: str,
        headers: Pairs,
        body: bytes,
        trailers: Pairs,
        timeout_ms: int,
    ) -> tuple[int, int]:
        call_id = self._next_call
        self._next_call += 1

        def done(response: HttpCallResponse | None) -> None:
            self._http_call_done(root, call_id, response)

        try:
            started = self.services.http_call(
                cluster, headers, body, trailers, max(timeout_ms, 1) / 1000, done
            )
        except Exception as exc:
            log.warning("wasm plugin %s: http_call to %s failed: %s", self.label, cluster, exc)
            return Status.INTERNAL_FAILURE, 0
        if not started:
            return Status.BAD_ARGUMENT, 0
        root.pending_calls.add(call_id)
        return Status.OK, call_id

    def _http_call_done(
        self, root: RootContext, call_id: int, response: HttpCallResponse | None
    ) -> None:
        root.pending_calls.discard(call_id)
        if self.failed is not None or self._closed or root.deleted:
            return
        headers = response.headers if response is not None else []
        body = response.body if response is not None else b""
        trailers = response.trailers if response is not None else []
        root.maps[MapType.HTTP_CALL_RESPONSE_HEADERS] = headers
        root.maps[MapType.HTTP_CALL_RESPONSE_TRAILERS] = trailers
        root.buffers[BufferType.HTTP_CALL_RESPONSE_BODY] = bytearray(body)
        try:
            self._with(
                root, "proxy_on_http_call_response", root.id, call_id, len(headers),
                len(body), len(trailers),
            )  # fmt: skip
        except PluginFailure:
            pass
        finally:
            root.maps.pop(MapType.HTTP_CALL_RESPONSE_HEADERS, None)
            root.maps.pop(MapType.HTTP_CALL_RESPONSE_TRAILERS, None)
            root.buffers.pop(BufferType.HTTP_CALL_RESPONSE_BODY, None)

    def register_queue(self, root: RootContext, name: str) -> int:
        def ready(queue_id: int) -> None:
            self.services.call_soon(lambda: self._queue_ready(root, queue_id))

        return self.shared.register_queue(self.vm_id, name, ready)

    def _queue_ready(self, root: RootContext, queue_id: int) -> None:
        if self.failed is not None or self._closed or root.deleted:
            return
        with contextlib.suppress(PluginFailure):
            self._with(root, "proxy_on_queue_ready", root.id, queue_id)

    # -- properties and logs ---------------------------------------------------------------
    def property(self, raw: bytes) -> bytes | None:
        context = self.effective
        key = raw.rstrip(b"\0")
        if context is not None:
            value = context.filter_state.get(key)
            if value is not None:
                return value
            if context.parent is not None:
                value = context.parent.filter_state.get(key)
                if value is not None:
                    return value
        path = tuple(key.split(b"\0"))
        if context is not None:
            plugin = self.plugins.get(context.root.id)
            if plugin is not None and len(path) == 1:
                if path[0] == b"plugin_name":
                    return plugin.name.encode()
                if path[0] == b"plugin_root_id":
                    return plugin.root_id.encode()
            if path == (b"plugin_vm_id",):
                return self.vm_id.encode()
            if context.properties is not None:
                value = context.properties(path)
                if value is not None:
                    return value
        return self.services.property(path)

    def log(self, level: int, message: str) -> None:
        context = self.effective
        plugin = self.plugins.get(context.root.id) if context is not None else None
        self.services.log(plugin.name if plugin else self.label, level, message)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_timers()
        self.guest.close()
