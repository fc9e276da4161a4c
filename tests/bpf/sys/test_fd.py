from __future__ import annotations

import gc
import os

import pytest

from remora.bpf.sys.fd import FD


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_close_once_and_raw_after_close_raises(no_fd_leak: None) -> None:
    fd = FD(os.open("/dev/null", os.O_RDONLY))
    n = fd.raw
    fd.close()
    fd.close()  # second close is a no-op, never closes a reused number
    assert fd.closed and not _is_open(n)
    with pytest.raises(ValueError):
        _ = fd.raw


def test_context_manager_and_finalizer(no_fd_leak: None) -> None:
    with FD(os.open("/dev/null", os.O_RDONLY)) as fd:
        n = fd.raw
        assert _is_open(n)
    assert not _is_open(n)
    dropped = FD(os.open("/dev/null", os.O_RDONLY))
    n = dropped.raw
    with pytest.warns(ResourceWarning, match="never closed"):
        del dropped
        gc.collect()
    assert not _is_open(n)


def test_leak_check_detects_leaks() -> None:
    from tests.bpf.conftest import fd_leak_check

    leaked = -1
    try:
        with pytest.raises(AssertionError, match="leaked fds"), fd_leak_check():
            leaked = os.open("/dev/null", os.O_RDONLY)
    finally:
        os.close(leaked)


def test_leak_check_catches_owners_dropped_without_close() -> None:
    """gc finalizers close dropped fds, so a bare fd count would miss a forgotten close()."""
    from tests.bpf.conftest import fd_leak_check

    with pytest.raises(AssertionError, match=r"never closed: \['map fd"), fd_leak_check():
        forgotten = FD(os.open("/dev/null", os.O_RDONLY), "map")
        del forgotten


def test_finalizer_warns_and_still_closes() -> None:
    fd = FD(os.open("/dev/null", os.O_RDONLY), "prog")
    n = fd.raw
    with pytest.warns(ResourceWarning, match=f"prog fd {n} was never closed"):
        del fd
        gc.collect()
    assert not _is_open(n)
