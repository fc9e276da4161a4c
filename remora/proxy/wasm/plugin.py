"""A configured Wasm filter at run time: its VM (shared per vm_id), root context and stats.

VMs are kept process-wide by their spec, so the same filter in two listeners, or a config
reload that leaves a filter unchanged, keeps one VM and what its guest holds in memory. A VM
that failed is replaced for the next stream; the plugin's root context is started again on the
new VM (its `proxy_on_configure` runs again), and the restart is counted.

Stats, under `wasm.<plugin name>.` (remora's own; Envoy has no per-plugin failure stats):
`vm_created`, `vm_restarts`, `traps`, `deadline_exceeded`, `fuel_exhausted`, `memory_exceeded`,
`failed_streams` and `fail_open`. Envoy's `wasm.envoy.wasm.runtime.<runtime>.created/active`
count VMs per runtime name, as in Envoy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remora.proxy.stats import Counter, Gauge, Histogram, StatsError, Store
from remora.wasm.proxywasm.abi import LogLevel, MetricType, Pairs
from remora.wasm.proxywasm.contexts import RootContext
from remora.wasm.proxywasm.vm import (
    Cancellable,
    HttpCallResponse,
    PluginFailure,
    PluginSpec,
    PluginVm,
    VmSpec,
)

log = logging.getLogger("remora.proxy.wasm")

_PY_LEVELS = (
    logging.DEBUG,
    logging.DEBUG,
    logging.INFO,
    logging.WARNING,
    logging.ERROR,
    logging.CRITICAL,
)


class _Deferred:
    """A timer asked for before the event loop runs (config is compiled before it starts)."""

    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False
        self.handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()


class ProxyServices:
    """`HostServices` for the proxy: asyncio timers, the proxy's log, clusters, stats."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        # The listener whose stream last ran the filter supplies the clusters an http_call
        # may name (one process has one cluster set; listeners share it).
        self.clusters: dict[str, object] = {}
        self._pending: list[_Deferred] = []
        self._node: dict[bytes, bytes] = {}
        # Each plugin's last log lines, quoted when it fails to start.
        self.recent: dict[str, deque[str]] = {}

    # -- loop ------------------------------------------------------------------------------
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def bind_store(self, store: Store) -> None:
        """The server is starting (in its loop): its stats take the filters' metrics, and
        timers asked for before the loop ran start now."""
        self.store = store
        self.start()

    def start(self) -> None:
        """In the running loop: start what was asked for before it ran."""
        loop = self._loop()
        assert loop is not None
        pending, self._pending = self._pending, []
        for deferred in pending:
            if not deferred.cancelled:
                deferred.handle = loop.call_later(deferred.delay, deferred.callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        loop = self._loop()
        if loop is None:
            deferred = _Deferred(delay, callback)
            self._pending.append(deferred)
            return deferred
        return loop.call_later(delay, callback)

    def call_soon(self, callback: Callable[[], None]) -> None:
        loop = self._loop()
        if loop is None:
            self._pending.append(_Deferred(0, callback))
            return
        loop.call_soon(callback)

    # -- the rest --------------------------------------------------------------------------
    def log(self, plugin: str, level: int, message: str) -> None:
        self.recent.setdefault(plugin, deque(maxlen=5)).append(
            f"{LogLevel.NAMES[min(max(level, 0), 5)]}: {message}"
        )
        log.log(_PY_LEVELS[min(max(level, 0), 5)], "wasm log %s: %s", plugin, message)

    def log_level(self) -> int:
        effective = log.getEffectiveLevel()
        if effective <= logging.DEBUG:
            return LogLevel.DEBUG
        if effective <= logging.INFO:
            return LogLevel.INFO
        if effective <= logging.WARNING:
            return LogLevel.WARN
        return LogLevel.ERROR

    def http_call(
        self,
        cluster: str,
        headers: Pairs,
        body: bytes,
        trailers: Pairs,
        timeout: float,
        done: Callable[[HttpCallResponse | None], None],
    ) -> bool:
        from remora.proxy.upstream.cluster import Cluster
        from remora.proxy.wasm.http_call import CallFailed, call_cluster

        target = self.clusters.get(cluster)
        if not isinstance(target, Cluster):
            return False

        async def run() -> None:
            try:
                response = await call_cluster(target, headers, body, timeout)
            except (OSError, TimeoutError, CallFailed) as exc:
                log.info("wasm http_call to cluster %s failed: %s", cluster, exc or "timeout")
                done(None)
                return
            done(response)

        asyncio.get_running_loop().create_task(run())
        return True

    def metric(self, kind: int, name: str) -> StoreMetric:
        return StoreMetric(self, kind, name)

    def property(self, path: tuple[bytes, ...]) -> bytes | None:
        if len(path) >= 2 and path[0] == b"node":
            return self._node.get(path[1])
        return None


class StoreMetric:
    """A filter's metric in the proxy's stats store, under the name the filter gave.

    Filters define metrics in `proxy_on_configure`, which runs when the config is compiled,
    before the server's store is known: the stat is resolved on first use after that."""

    def __init__(self, services: ProxyServices, kind: int, name: str) -> None:
        self.services = services
        self.kind = kind
        self.name = name
        self.current = 0
        self._stat: Counter | Gauge | Histogram | None = None
        self._store: Store | None = None
        self._resolve()

    def _resolve(self) -> Counter | Gauge | Histogram | None:
        store = self.services.store
        if store is not self._store:  # first use, or a new server (tests, hot restart)
            self._store = store
            self._stat = None
        if self._stat is None and store is not None:
            try:
                if self.kind == MetricType.COUNTER:
                    self._stat = store.counter(self.name)
                    self._stat.inc(self.current)
                elif self.kind == MetricType.GAUGE:
                    self._stat = store.gauge(self.name)
                    self._stat.set(self.current)
                else:
                    self._stat = store.histogram(self.name)
            except StatsError as exc:  # a name the store refuses, or a kind conflict
                raise ValueError(str(exc)) from None
        return self._stat

    def add(self, delta: int) -> None:
        stat = self._resolve()  # first: resolving carries over what was counted before
        self.current += delta
        if isinstance(stat, Counter):
            stat.inc(delta)
        elif isinstance(stat, Gauge):
            stat.set(self.current)

    def set(self, value: int) -> None:
        stat = self._resolve()
        self.current = value
        if isinstance(stat, Gauge):
            stat.set(value)

    def record(self, value: int) -> None:
        stat = self._resolve()
        if isinstance(stat, Histogram):
            stat.record(value)

    def value(self) -> int:
        return self.current


@dataclass
class PluginStats:
    vm_created: Counter
    vm_restarts: Counter
    traps: Counter
    deadline_exceeded: Counter
    fuel_exhausted: Counter
    memory_exceeded: Counter
    failed_streams: Counter
    fail_open: Counter

    @classmethod
    def create(cls, store: Store, plugin: str) -> PluginStats:
        prefix = f"wasm.{plugin}."
        return cls(*(store.counter(prefix + name) for name in cls.__dataclass_fields__))


_VMS: dict[tuple[object, ...], PluginVm] = {}


class WasmPlugin:
    def __init__(
        self,
        vm_spec: VmSpec,
        plugin: PluginSpec,
        runtime: str,
        services: ProxyServices,
    ) -> None:
        self.vm_spec = vm_spec
        self.plugin = plugin
        self.runtime = runtime
        self.services = services
        self.stats = PluginStats.create(Store(), plugin.name)  # until bound to the server's
        self._bound: Store | None = None
        self._created = 0
        self._last_failure: PluginFailure | None = None
        self.vm = self._vm()
        self.root: RootContext = self.vm.add_plugin(plugin)

    def bind(self, listener: Any) -> None:
        """A stream on `listener` is about to use the plugin: its clusters and stats apply."""
        self.services.clusters = listener.clusters
        store = listener.store
        if self._bound is store:
            return
        if self.services.store is not store:
            self.services.bind_store(store)
        self._bound = store
        self.stats = PluginStats.create(store, self.plugin.name)
        self.stats.vm_created.inc(self._created)
        store.counter(f"wasm.envoy.wasm.runtime.{self.runtime}.created").inc(self._created)
        store.gauge(f"wasm.envoy.wasm.runtime.{self.runtime}.active").set(1)

    def _vm(self) -> PluginVm:
        key = self.vm_spec.key
        vm = _VMS.get(key)
        if vm is None or vm.failed is not None:
            vm = PluginVm(
                self.vm_spec,
                self.services,
                metrics=self.services.metric,
                label=self.plugin.name,
            )
            _VMS[key] = vm
            self._created += 1
            if self._bound is not None:
                self.stats.vm_created.inc()
                self._bound.counter(f"wasm.envoy.wasm.runtime.{self.runtime}.created").inc()
        return vm

    def current(self) -> tuple[PluginVm, RootContext]:
        """The live VM and this plugin's root on it, remaking both after a failure."""
        vm = self.vm
        if vm.failed is None:
            return vm, self.root
        self.stats.vm_restarts.inc()
        vm.close()
        self.vm = self._vm()
        self.root = self.vm.add_plugin(self.plugin)
        return self.vm, self.root

    def charge(self, failure: PluginFailure) -> None:
        """A stream failed on `failure`; the failure itself is counted once, by its kind."""
        self.stats.failed_streams.inc()
        if failure is self._last_failure:
            return
        self._last_failure = failure
        counter = {
            "trap": self.stats.traps,
            "exit": self.stats.traps,
            "host": self.stats.traps,
            "deadline": self.stats.deadline_exceeded,
            "fuel": self.stats.fuel_exhausted,
            "memory": self.stats.memory_exceeded,
        }.get(failure.kind)
        if counter is not None:
            counter.inc()


# One set of services per process: the proxy has one event loop and one stats store.
SERVICES = ProxyServices(None)
