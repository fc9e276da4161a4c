from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from remora.proxy.accesslog import sinks
from remora.proxy.accesslog.sinks import FdSink


def test_without_loop_writes_immediately(tmp_path: Path) -> None:
    target = tmp_path / "a.log"
    sink = FdSink.open_file(str(target))
    sink.write("one\n")
    assert target.read_text() == "one\n"
    sink.close()


def test_file_is_appended_not_truncated(tmp_path: Path) -> None:
    target = tmp_path / "a.log"
    target.write_text("existing\n")
    sink = FdSink.open_file(str(target))
    sink.write("new\n")
    sink.close()
    assert target.read_text() == "existing\nnew\n"


async def test_in_loop_writes_are_batched_to_next_iteration(tmp_path: Path) -> None:
    target = tmp_path / "a.log"
    sink = FdSink.open_file(str(target))
    sink.write("one\n")
    sink.write("two\n")
    assert target.read_text() == ""  # nothing written synchronously on the data path
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert target.read_text() == "one\ntwo\n"
    sink.close()


async def test_flush_interval_delays_and_close_flushes(tmp_path: Path) -> None:
    target = tmp_path / "a.log"
    sink = FdSink.open_file(str(target), flush_interval=30.0)
    sink.write("held\n")
    await asyncio.sleep(0.01)
    assert target.read_text() == ""
    sink.close()
    assert target.read_text() == "held\n"
    sink.write("after close\n")
    assert sink.dropped_lines == 1
    assert target.read_text() == "held\n"


async def test_large_batch_flushes_at_threshold(tmp_path: Path) -> None:
    target = tmp_path / "a.log"
    sink = FdSink.open_file(str(target), flush_interval=30.0)
    line = "x" * 1023 + "\n"
    for _ in range(sinks.FLUSH_BYTES // len(line)):
        sink.write(line)
    assert target.stat().st_size == sinks.FLUSH_BYTES
    sink.close()


async def test_full_nonblocking_pipe_is_bounded_and_drained_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sinks, "MAX_PENDING_BYTES", 512 * 1024)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    fcntl.fcntl(write_fd, 1031, 65536)  # F_SETPIPE_SZ: a known small capacity
    sink = FdSink(write_fd, "pipe", owned=True)
    line = "y" * 1023 + "\n"
    total = sinks.MAX_PENDING_BYTES // len(line) + 200
    for _ in range(total):
        sink.write(line)
    await asyncio.sleep(0)
    # The pipe holds 64 KiB; everything else waits in memory, capped, with the excess counted.
    assert sink.pending_bytes <= sinks.MAX_PENDING_BYTES
    assert sink.dropped_lines > 0
    received = 0
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        try:
            chunk = os.read(read_fd, 1 << 20)
        except BlockingIOError:
            chunk = b""
        received += len(chunk)
        if sink.pending_bytes == 0 and not chunk:
            break
        os.set_blocking(read_fd, False)
        await asyncio.sleep(0.03)
    assert sink.pending_bytes == 0
    assert received == (total - sink.dropped_lines) * len(line)
    sink.close()
    os.close(read_fd)


def test_broken_pipe_is_counted_not_raised() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    sink = FdSink(write_fd, "pipe", owned=True)
    sink.write("a\n")
    sink.write("b\n")
    assert sink.write_errors == 2
    assert sink.dropped_lines == 2
    sink.close()
