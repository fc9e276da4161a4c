"""The mesh's BPF objects build reproducibly, and a missing or stale build says what to run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remora.accel import build as build_mod
from remora.bpf.elf import read_elf
from remora.bpf.errors import BPFError


@pytest.mark.parametrize("name", build_mod.PROGRAMS)
def test_two_builds_in_different_places_give_the_same_bytes(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a" / "deep", tmp_path / "b"
    monkeypatch.chdir(tmp_path)
    one = build_mod.build(name, first)
    monkeypatch.chdir("/")
    two = build_mod.build(name, second)
    assert one.read_bytes() == two.read_bytes()
    assert str(tmp_path).encode() not in one.read_bytes()  # no build path leaks in
    spec = read_elf(one)
    assert spec.btf is not None and spec.programs


def test_missing_and_stale_objects_say_to_run_make_accel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_mod, "BUILD", tmp_path)
    with pytest.raises(BPFError, match="is not built: run `make accel`"):
        build_mod.object_path("tcp_telemetry")
    obj = build_mod.build("tcp_telemetry", tmp_path)
    assert build_mod.object_path("tcp_telemetry") == obj
    source = build_mod.SOURCES / "tcp_telemetry.bpf.c"
    os.utime(obj, (source.stat().st_mtime - 10, source.stat().st_mtime - 10))
    with pytest.raises(BPFError, match="is older than"):
        build_mod.object_path("tcp_telemetry")
