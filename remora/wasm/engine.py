"""One wasmtime Engine per configuration, and the epoch ticker that drives wall-clock deadlines.

Engines are expensive (each owns a code memory pool and compiler state) and a compiled Module only
runs on an engine with the same settings, so remora keeps exactly one engine per `EngineConfig`.
The config's fingerprint is part of the module cache key for the same reason.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import threading
from dataclasses import asdict, dataclass

import wasmtime

WASMTIME_VERSION: str = importlib.metadata.version("wasmtime")

# How often the ticker bumps the engine epoch while any store has a deadline. 5 ms keeps the
# deadline error small without waking the (shared, 2-core) machine too often.
EPOCH_TICK_SECONDS = 0.005

# wasmtime's own default for the guest's stack.
DEFAULT_MAX_WASM_STACK = 512 << 10
# wasmtime requires max_wasm_stack <= its async stack size (2 MiB by default) and panics in the
# engine constructor otherwise, as it does for 0. The ceiling is not raised (the C API has an
# async_stack_size setter that wasmtime-py does not bind): the guest's stack is carved from the
# calling thread's own native stack, so a larger cap could run past that thread's stack and turn
# a clean STACK_OVERFLOW trap into a segfault of the whole host.
MAX_WASM_STACK_CEILING = 2 << 20


def check_wasm_stack(size: int) -> None:
    """Raise ValueError unless wasmtime accepts `size` as max_wasm_stack without panicking."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"expected a size in bytes, got {size!r}")
    if not 1 <= size <= MAX_WASM_STACK_CEILING:
        raise ValueError(
            f"expected 1 byte to 2MiB ({MAX_WASM_STACK_CEILING} bytes; the default is "
            f"{DEFAULT_MAX_WASM_STACK // 1024}KiB), got {size}"
        )


@dataclass(frozen=True)
class EngineConfig:
    """The engine settings that change generated code (and so the compiled-module cache key)."""

    consume_fuel: bool = False
    epoch_interruption: bool = False
    max_wasm_stack: int | None = None
    # Linear memories allocated by remora.wasm.memguard, so memory-cap refusals are observable.
    host_memory: bool = False

    def __post_init__(self) -> None:
        if self.max_wasm_stack is not None:
            check_wasm_stack(self.max_wasm_stack)

    def fingerprint(self) -> str:
        canonical = json.dumps(
            {"wasmtime": WASMTIME_VERSION, **asdict(self)}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_wasmtime(self) -> wasmtime.Config:
        config = wasmtime.Config()
        config.consume_fuel = self.consume_fuel
        config.epoch_interruption = self.epoch_interruption
        if self.max_wasm_stack is not None:
            config.max_wasm_stack = self.max_wasm_stack
        if self.host_memory:
            from remora.wasm import memguard

            memguard.install(config)
        # wasmtime's own cache stays off (its default): remora's cache (cache.py) decides what
        # gets deserialized.
        return config


class EpochTicker:
    """Increments one engine's epoch every tick, but only while someone holds a deadline.

    A single shared ticker per engine (instead of a timer per run) keeps deadlines of concurrent
    stores independent: each store sets its own deadline in ticks relative to the current epoch.
    """

    def __init__(self, engine: wasmtime.Engine, tick: float = EPOCH_TICK_SECONDS) -> None:
        self._engine = engine
        self.tick = tick
        self._lock = threading.Lock()
        self._holders = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        with self._lock:
            self._holders += 1
            if self._thread is None:
                self._wake.clear()
                self._thread = threading.Thread(
                    target=self._run, name="remora-wasm-epoch", daemon=True
                )
                self._thread.start()

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self._wake.set()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(self.tick):
                self._engine.increment_epoch()
                continue
            # Woken because holders dropped to 0; someone may have acquired again since, in
            # which case this thread keeps ticking (acquire saw it alive and started none).
            with self._lock:
                if self._holders == 0:
                    self._thread = None
                    return
                self._wake.clear()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def ticks_for(self, seconds: float) -> int:
        return max(1, int(seconds / self.tick + 0.999999))


@dataclass
class EngineHandle:
    config: EngineConfig
    engine: wasmtime.Engine
    ticker: EpochTicker


_ENGINES: dict[EngineConfig, EngineHandle] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(config: EngineConfig) -> EngineHandle:
    """The process-wide engine for `config`, created on first use."""
    with _ENGINES_LOCK:
        handle = _ENGINES.get(config)
        if handle is None:
            engine = wasmtime.Engine(config.to_wasmtime())
            handle = EngineHandle(config, engine, EpochTicker(engine))
            _ENGINES[config] = handle
        return handle
