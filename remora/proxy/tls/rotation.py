"""Certificates rotated on disk reach new handshakes without a restart (`watched_directory`).

The watcher follows every watched directory of the TLS contexts in use. When one changes, each
context that watches it is read again off the event loop; a good result replaces the old
context for new connections (open ones keep theirs), and a bad one (a half-written file, a key
that does not match, an expired certificate) is logged with its field paths while the last
good context keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from remora.config.errors import ConfigErrors
from remora.proxy.tls.config import TlsContext

log = logging.getLogger("remora.tls")


class CertificateWatcher:
    def __init__(
        self,
        contexts: Callable[[], Sequence[TlsContext]],
        swap: Callable[[TlsContext, TlsContext], None],
        lock: asyncio.Lock | None = None,
    ) -> None:
        self._contexts = contexts
        self._swap = swap
        # The proxy's update lock: a secret update rebuilding the same context meanwhile would
        # otherwise swap a context that is no longer there, and one of the two would be lost.
        self._lock = lock or asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._restart = asyncio.Event()
        self.reloads = 0  # good rebuilds applied
        self.refusals = 0  # rebuilds refused, the old context kept

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tls-watch")

    def refresh(self) -> None:
        """The set of contexts changed (a reload or an xDS update): watch the new set."""
        self._restart.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._restart.clear()
            directories = sorted({d for c in self._contexts() for d in c.watched})
            if not directories:
                await self._restart.wait()
                continue
            import watchfiles  # only once something is watched: it costs start-up time

            logging.getLogger("watchfiles").setLevel(max(log.getEffectiveLevel(), logging.WARNING))
            try:
                async for changes in watchfiles.awatch(
                    *directories, debounce=50, step=20, stop_event=self._restart
                ):
                    changed = {path for _, path in changes}
                    async with self._lock:
                        await self._reload(changed)
            except Exception as exc:  # a directory removed under the watch, say
                log.warning("TLS watch on %s stopped (%s); retrying", directories, exc)
                await asyncio.sleep(1.0)

    async def _reload(self, changed: set[str]) -> None:
        for context in list(self._contexts()):
            if context.rebuild is None or not context.watched:
                continue
            if not any(
                p.startswith(d.rstrip("/") + "/") or p == d
                for p in changed
                for d in context.watched
            ):
                continue
            try:
                fresh = await asyncio.to_thread(context.rebuild, None)
            except Exception as exc:  # anything: the watch goes on, the last good one serves
                self.refusals += 1
                if not isinstance(exc, ConfigErrors):
                    log.exception("TLS files in %s could not be read again", context.watched)
                    continue
                log.error(
                    "TLS files in %s changed but are not usable, the last good ones keep "
                    "serving: %s",
                    ", ".join(context.watched),
                    "; ".join(str(e) for e in exc.errors),
                )
                continue
            if fresh.fingerprint == context.fingerprint:
                continue
            self.reloads += 1
            serials = ", ".join(c.serial for c in fresh.certificates) or "no certificate"
            log.info("TLS files in %s reloaded (serial %s)", ", ".join(fresh.watched), serials)
            self._swap(context, fresh)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")
