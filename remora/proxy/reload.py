"""Live reload of the bootstrap file: on SIGHUP, or on a change with `--watch`.

The decision is sans-IO: `plan_reload(old, new)` compares two compiled configs resource by
resource (by their bootstrap JSON, which is what the operator edited) and says what to run. The
`Reloader` shell reads and compiles the file off the event loop, logs, counts, and hands the plan
to whoever owns the running sets (the server, or the ADS client when there is one, so that
static and dynamic resources are merged in one place).

What a reload cannot apply live (the admin address, `dynamic_resources`, and the node identity an
ADS stream was opened with) is kept as it runs and logged as needing a restart; the rest is
applied. Refusing the whole reload for it would make one forgotten admin edit block every
listener change behind a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from remora.config.compile import ProxyConfig
from remora.config.errors import ConfigError, ConfigErrors
from remora.proxy.accesslog import AccessLogger
from remora.proxy.listener_config import ListenerConfig
from remora.proxy.stats import Counter, Gauge, Store

log = logging.getLogger("remora.reload")

# Bootstrap parts that a running process cannot change; a reload keeps the running ones. The
# node identity counts only with ADS (the stream was opened with it); a static proxy ignores it.
RESTART_ONLY = ("admin", "dynamic_resources")
RESTART_ONLY_WITH_ADS = (*RESTART_ONLY, "node")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Changes:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, kind: str) -> str:
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        return f"{kind} {'; '.join(parts)}" if parts else ""


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    # What to run: the new static resources (the running objects where a resource is unchanged,
    # so its sockets, pools and open log files stay), with the running admin and ADS settings.
    config: ProxyConfig
    listeners: Changes
    clusters: Changes
    needs_restart: tuple[str, ...]  # one line per change that is kept out until a restart
    # static_resources.secrets by the names whose value changed (xDS resources may name them).
    secrets: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.listeners or self.clusters or self.secrets)

    def summary(self) -> str:
        parts = [self.listeners.describe("listeners"), self.clusters.describe("clusters")]
        if self.secrets:
            parts.append(f"secrets changed {', '.join(self.secrets)}")
        return " | ".join(p for p in parts if p) or "no change"


def plan_reload(old: ProxyConfig, new: ProxyConfig) -> ReloadPlan:
    """Compare the running config with a freshly compiled one (both valid on their own)."""
    old_listeners = {listener.name: listener for listener in old.listeners}
    new_listeners = {listener.name: listener for listener in new.listeners}
    listeners, listener_changes = _merge(
        old_listeners,
        new_listeners,
        _sources(old.source, "listeners"),
        _sources(new.source, "listeners"),
    )
    clusters, cluster_changes = _merge(
        old.clusters,
        new.clusters,
        _sources(old.source, "clusters"),
        _sources(new.source, "clusters"),
    )
    needs_restart = _restart_only_changes(old, new)
    kept = RESTART_ONLY_WITH_ADS if old.ads is not None else RESTART_ONLY
    source = {k: v for k, v in new.source.items() if k not in kept}
    source.update({k: v for k, v in old.source.items() if k in kept})
    node = old if old.ads is not None else new
    config = dataclasses.replace(
        new,
        listeners=tuple(listeners.values()),
        clusters=clusters,
        admin=old.admin,
        source=source,
        node_id=node.node_id,
        node_cluster=node.node_cluster,
        ads=old.ads,
    )
    secrets = tuple(
        sorted(
            name
            for name in old.static_secrets.keys() | new.static_secrets.keys()
            if old.static_secrets.get(name) != new.static_secrets.get(name)
        )
    )
    return ReloadPlan(config, listener_changes, cluster_changes, needs_restart, secrets)


def unused_loggers(compiled: ProxyConfig, running: Iterable[ListenerConfig]) -> list[AccessLogger]:
    """Loggers `compiled` opened that nothing will serve with (each may own a file descriptor)."""
    kept = {id(logger) for listener in running for logger in _loggers(listener)}
    return [
        logger
        for listener in compiled.listeners
        for logger in _loggers(listener)
        if id(logger) not in kept
    ]


def _loggers(listener: ListenerConfig) -> Sequence[AccessLogger]:
    return listener.access_logs


def _merge(
    old: Mapping[str, T],
    new: Mapping[str, T],
    old_sources: Mapping[str, Any],
    new_sources: Mapping[str, Any],
) -> tuple[dict[str, T], Changes]:
    merged: dict[str, T] = {}
    added: list[str] = []
    changed: list[str] = []
    for name, item in new.items():
        if name not in old:
            added.append(name)
            merged[name] = item
        elif old_sources.get(name) == new_sources.get(name):
            merged[name] = old[name]
        else:
            changed.append(name)
            merged[name] = item
    removed = [name for name in old if name not in new]
    return merged, Changes(tuple(added), tuple(removed), tuple(changed))


def _sources(source: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """name -> the resource as the bootstrap spells it (JSON), for comparing edits."""
    items = source.get("static_resources", {}).get(kind, [])
    return {item.get("name", ""): item for item in items}


def _restart_only_changes(old: ProxyConfig, new: ProxyConfig) -> tuple[str, ...]:
    notes: list[str] = []
    if old.source.get("admin") != new.source.get("admin"):
        notes.append(f"admin ({_or_none(old.admin)} -> {_or_none(new.admin)})")
    if old.source.get("dynamic_resources") != new.source.get("dynamic_resources"):
        notes.append("dynamic_resources")
    elif old.ads != new.ads:  # the same text, but the ADS cluster it names moved
        target = new.ads.target if new.ads else "none"
        notes.append(f"the ADS control plane address ({_or_none(old.ads and old.ads.target)} "
                     f"-> {target})")  # fmt: skip
    if old.ads is not None and old.source.get("node") != new.source.get("node"):
        notes.append("node (the identity the ADS stream was opened with)")
    return tuple(notes)


def _or_none(value: object) -> str:
    return str(value) if value else "none"


# -- the shell ---------------------------------------------------------------------------------
Apply = Callable[[ProxyConfig], Awaitable[None]]
Load = Callable[[str], ProxyConfig]


@dataclass(frozen=True, slots=True)
class ReloadStats:
    """`server.reload.*`, named like Envoy's xDS subscription stats (`update_attempt`...)."""

    attempt: Counter
    success: Counter
    rejected: Counter
    restart_required: Counter
    update_time: Gauge

    @classmethod
    def create(cls, store: Store) -> ReloadStats:
        prefix = "server.reload."
        return cls(
            store.counter(prefix + "update_attempt"),
            store.counter(prefix + "update_success"),
            store.counter(prefix + "update_rejected"),
            store.counter(prefix + "restart_required"),
            store.gauge(prefix + "update_time"),
        )


class Reloader:
    """Reloads one bootstrap file into a running proxy; requests coalesce, one runs at a time."""

    def __init__(
        self,
        path: str,
        running: Callable[[], ProxyConfig],
        apply: Apply,
        store: Store,
        load: Load,
        accepting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.path = path
        self._running = running
        self._apply = apply
        self._load = load
        self._accepting = accepting
        self.stats = ReloadStats.create(store)
        self._pending: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._digest: bytes | None = _digest(path)  # of the file as last read

    def request(self, reason: str) -> None:
        """Reload soon; safe to call from a signal handler. A request made while a reload runs
        is served by one more reload after it, however many arrive."""
        self._pending = reason
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="reload")

    async def _run(self) -> None:
        while self._pending is not None:
            reason, self._pending = self._pending, None
            try:
                await self.reload(reason)
            except Exception:  # a surprise must not end the process that is serving
                self.stats.rejected.inc()
                log.exception("reload (%s) failed unexpectedly; the running config is kept", reason)

    async def reload(self, reason: str) -> bool:
        """Apply what changed in the file; returns whether the proxy now runs the file."""
        if not self._accepting():
            log.info("reload (%s) ignored: the proxy is shutting down", reason)
            return False
        self.stats.attempt.inc()
        self._digest, new = await self._read_off_loop()
        if isinstance(new, ConfigErrors):
            self._rejected(reason, new)
            return False
        old = self._running()
        plan = plan_reload(old, new)
        for warning in new.warnings:
            log.warning("%s", warning)
        if plan.needs_restart:
            self.stats.restart_required.inc()
            for note in plan.needs_restart:
                log.warning(
                    "reload (%s): %s changed, which needs a restart; it runs as before",
                    reason, note,
                )  # fmt: skip
        if plan.changed:
            try:
                await self._apply(plan.config)
            except ConfigErrors as exc:  # a new secret that dynamic resources cannot take
                _close(unused_loggers(new, old.listeners))
                self._rejected(reason, exc)
                return False
            except OSError as exc:  # a bind failure: nothing of the reload was applied
                _close(unused_loggers(new, old.listeners))
                self.stats.rejected.inc()
                log.error(
                    "reload (%s) refused, the running config is kept: %s",
                    reason, exc.strerror or exc,
                )  # fmt: skip
                return False
        _close(unused_loggers(new, plan.config.listeners))
        self.stats.success.inc()
        self.stats.update_time.set(int(time.time() * 1000))
        log.info("reload (%s) of %s: %s", reason, self.path, plan.summary())
        return True

    async def _read_off_loop(self) -> tuple[bytes | None, ProxyConfig | ConfigErrors]:
        """Parse and compile in a worker thread, so the data path keeps running meanwhile.

        The thread is not enough by itself: a large bootstrap allocates about a million objects,
        and the collector's full passes over them held the GIL (and so the loop) for 400 ms at a
        time here. A compiled config has no reference cycles (refcounting frees one that is
        dropped), so collection is paused for the load and the result frozen like the start-up
        heap (`settle_heap`). On a 3000-cluster file the worst stall went from 515 ms to 50-130 ms
        (`bench/reload_stall.py`)."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return await asyncio.to_thread(self._read, self.path)
        finally:
            gc.freeze()
            if was_enabled:
                gc.enable()

    def _read(self, path: str) -> tuple[bytes | None, ProxyConfig | ConfigErrors]:
        digest = _digest(path)
        try:
            config = self._load(path)
        except ConfigErrors as exc:
            return digest, exc
        if not config.source:
            # Most often a file caught while it is being rewritten in place: serving nothing
            # would close every listener, so an empty bootstrap needs a deliberate restart.
            message = "the file holds no configuration; an empty bootstrap is not reloaded"
            return digest, ConfigErrors([ConfigError("", message)])
        return digest, config

    def _rejected(self, reason: str, errors: ConfigErrors) -> None:
        self.stats.rejected.inc()
        heading, *rest = errors.listing(self.path)
        log.error("reload (%s) refused, the running config is kept: %s", reason, heading)
        for line in rest:
            log.error("%s", line)

    # -- --watch ---------------------------------------------------------------------------------
    def start_watching(self) -> None:
        self._watch_task = asyncio.create_task(self.watch(), name="reload-watch")

    async def watch(self) -> None:
        """Reload whenever the file's content changes.

        Editors and config managers replace a file by renaming a new one over it, and Kubernetes
        swaps a symlinked directory; a watch on the file itself would go deaf after the first
        save. So the parent directory is watched and the file's content compared."""
        import watchfiles

        file = Path(self.path).absolute()
        # Its "1 change detected" per event says less than the reload line that follows.
        logging.getLogger("watchfiles").setLevel(max(log.getEffectiveLevel(), logging.WARNING))

        def concerns_file(_change: watchfiles.Change, path: str) -> bool:
            return Path(path).name == file.name or file.is_symlink()

        log.info("watching %s for changes", file)
        failure = ""
        while True:
            try:
                async for _changes in watchfiles.awatch(
                    file.parent, watch_filter=concerns_file, recursive=False, step=50
                ):
                    await self._changed()
                problem = "the watch ended"
            except Exception as exc:  # a watch that fails says so and starts again
                problem = f"{type(exc).__name__}: {exc}"
            if problem != failure:
                log.error("watching %s: %s; retrying every second", file, problem)
                failure = problem
            await asyncio.sleep(1.0)
            await self._changed()

    async def _changed(self) -> None:
        digest = await asyncio.to_thread(_digest, self.path)
        if digest != self._digest:
            self.request("file changed")

    async def close(self) -> None:
        for task in (self._watch_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch_task = self._task = None


def _digest(path: str) -> bytes | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest()
    except OSError:
        return None


def _close(loggers: Iterable[AccessLogger]) -> None:
    for logger in loggers:
        logger.close()
