"""An owner object per kernel fd.

Every map, program and BTF object holds one `FD`. It closes exactly once: explicitly, on `with`
exit, or from a finalizer if the owner is dropped, so fds never leak and are never double-closed
(a double close could close someone else's fd that reused the number). A finalizer close is a
safety net, not a release policy: like an unclosed file it emits a ResourceWarning, so tests
(and users running with -W error) see an owner that forgot to close.
"""

from __future__ import annotations

import os
import warnings
import weakref
from types import TracebackType
from typing import Self


def _gc_close(fd: int, kind: str) -> None:
    warnings.warn(f"{kind} fd {fd} was never closed (released by gc)", ResourceWarning, 2)
    os.close(fd)


class Closing:
    """`with owner:` closes it on the way out (FD, Map, Program and Collection alike)."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FD(Closing):
    """Owns one file descriptor. `raw` raises after close rather than returning a stale number."""

    __slots__ = ("__weakref__", "_fd", "_finalizer", "kind")

    def __init__(self, fd: int, kind: str = "bpf") -> None:
        if fd < 0:
            raise ValueError(f"invalid fd {fd}")
        self._fd = fd
        self.kind = kind
        self._finalizer = weakref.finalize(self, _gc_close, fd, kind)

    @property
    def raw(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{self.kind} fd already closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._finalizer.detach()
            os.close(fd)

    def dup(self) -> FD:
        return FD(os.dup(self.raw), self.kind)

    def __repr__(self) -> str:
        return f"FD({self._fd}, {self.kind!r})"
