"""Hostile and careless files in a config directory: every failure is a rejected load.

The watcher must outlive whatever a file holds (it is the only way a later fix gets applied), the
first load must fail cleanly rather than leave the xDS port closed, and no file may stall the
event loop or exhaust memory.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from remora.config.yamlload import LIMITS
from remora.xds import mesh
from remora.xds.cache import SnapshotCache
from remora.xds.source import DirectorySource, FirstLoadError, mesh_group, parse_directory

GOOD = "services:\n  web:\n    endpoints: [{address: 127.0.0.1, port: 9000}]\n"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

_BOMB = (
    "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10) if p else ', '.join(['x'] * 10)}]\n"
        for p, c in zip(["", *"abcdef"], "abcdefg", strict=True)
    )
    + "services: [*g]\n"
)

# (file name, bytes, what the error must say)
HOSTILE: list[tuple[str, bytes, str]] = [
    ("duration.yaml",
     b'resources:\n- "@type": type.googleapis.com/google.protobuf.Duration\n  value: 1s\n',
     "not an xDS resource: @type google.protobuf.Duration"),
    ("struct.yaml",
     b'resources:\n- "@type": type.googleapis.com/google.protobuf.Struct\n  value: {a: 1}\n',
     "not an xDS resource"),
    ("overflow.yaml",
     f'resources:\n- "@type": {CLUSTER}\n  name: c\n  connect_timeout: 99999999999999999999s\n'
     .encode(), "resources[0].connect_timeout"),
    ("binary.yaml", b"services:\n  web: \xff\xfe\x00\n", "not UTF-8"),
    ("deep.yaml", b"resources: " + b"[" * 2000 + b"]" * 2000, "nested deeper than"),
    ("deepmap.yaml", b"services: " + b"{a: " * 3000 + b"}" * 3000, "nested deeper than"),
    ("bomb.yaml", _BOMB.encode(), "aliases expand the document"),
    ("cycle.yaml", b"services: &x [*x]\n", "a cycle"),
    ("nameless.yaml", f'resources:\n- "@type": {CLUSTER}\n  connect_timeout: 1s\n'.encode(),
     "resources[0].name: required"),
    ("top.json", b'["not", "a", "mapping"]', "the top level must be a mapping"),
    ("tags.yaml", b"services: !!python/object:os.system x\n", "invalid YAML"),
    ("typeint.yaml", b'resources:\n- {"@type": 3, name: c}\n', "resources[0].@type: must be"),
    ("novalue.yaml", b'resources:\n- "@type": type.googleapis.com/google.protobuf.Duration\n',
     "resources[0]"),
    ("inf.yaml",
     f'resources:\n- "@type": {CLUSTER}\n  name: c\n  per_connection_buffer_limit_bytes: .inf\n'
     .encode(),
     "resources[0].per_connection_buffer_limit_bytes"),
    ("meshtimeout.yaml",
     b"services:\n  w:\n    endpoints: [{address: 127.0.0.1, port: 1}]\n"
     b"    routes: [{prefix: /, to: {w: 1}, timeout: 99999999999999999999s}]\n",
     "services.w.routes[0].timeout: must be at most 315576000000s"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_file_is_a_named_rejection(
    tmp_path: Path, name: str, data: bytes, expected: str
) -> None:
    (tmp_path / name).write_bytes(data)
    started = time.monotonic()
    cache = SnapshotCache(mesh_group)
    with pytest.raises(FirstLoadError) as caught:
        DirectorySource(tmp_path, cache).load_first()
    assert time.monotonic() - started < 5
    [error] = caught.value.errors
    assert name in error and expected in error, error
    assert len(error) < 2000
    assert cache.snapshots() == {}


async def test_the_watcher_survives_every_hostile_file_and_applies_the_next_fix(
    tmp_path: Path,
) -> None:
    (tmp_path / "mesh.yaml").write_text(GOOD)
    cache = SnapshotCache(mesh_group)
    source = DirectorySource(tmp_path, cache)
    ready = asyncio.Event()
    task = asyncio.create_task(source.watch(ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        await asyncio.sleep(0.2)  # let the watcher start
        port = 9000
        for name, data, expected in HOSTILE:
            serving = cache.get(mesh.SIDECAR)
            (tmp_path / name).write_bytes(data)
            await _until(lambda e=expected: e in source.last_error, f"{name} rejected")  # type: ignore[misc]
            assert cache.get(mesh.SIDECAR) is serving
            (tmp_path / name).unlink()
            port += 1
            (tmp_path / "mesh.yaml").write_text(GOOD.replace("9000", str(port)))
            fixed = lambda s=serving: cache.get(mesh.SIDECAR) is not s  # noqa: E731
            await _until(fixed, f"fix after {name}")
            assert source.last_error == ""
        assert not task.done()
    finally:
        task.cancel()


async def _until(check: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.02)


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with (tmp_path / "big.yaml").open("wb") as file:
        file.write(b"services: {}\n# " + b"x" * (LIMITS.max_bytes + 1))
    started = time.monotonic()
    with pytest.raises(Exception, match=r"big.yaml: larger than 16 MiB") as caught:
        parse_directory(tmp_path)
    assert type(caught.value).__name__ == "SourceError"
    assert time.monotonic() - started < 1


async def test_parsing_a_large_directory_leaves_the_event_loop_responsive(tmp_path: Path) -> None:
    # Seconds of YAML parsing and snapshot building, which must run off the loop.
    lines = ["services:"]
    lines += [f"  s{i}: {{endpoints: [{{address: 127.0.0.1, port: {1 + i % 60000}}}]}}"
              for i in range(4_000)]  # fmt: skip
    (tmp_path / "mesh.yaml").write_text("\n".join(lines) + "\n")
    source = DirectorySource(tmp_path, SnapshotCache(mesh_group))
    worst = 0.0
    load = asyncio.create_task(source.apply_async())
    while not load.done():
        tick = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - tick)
    assert load.result() is True, source.last_error
    assert worst < 0.5, f"the loop stalled for {worst:.2f}s"
