"""Mutation fuzzing of the ELF and BTF parsers: corrupt input must end in BPFLoadError only.

A seeded mutator runs everywhere (no extra dependency); when `hypothesis` is installed a
property-based target explores further.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import pytest

from remora.bpf.btf.types import Spec
from remora.bpf.elf import read_elf_bytes
from remora.bpf.errors import BPFError

CORPUS = sorted(Path("/usr/lib/x86_64-linux-gnu/bpf").glob("xdpfilt_alw_all.o"))


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    op = rng.randrange(4)
    if op == 0:  # truncate
        return bytes(buf[: rng.randrange(len(buf))])
    if op == 1:  # flip bytes
        for _ in range(rng.randint(1, 16)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif op == 2:  # overwrite a 4-byte word with an interesting value
        pos = rng.randrange(len(buf) - 4)
        buf[pos : pos + 4] = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1]).to_bytes(
            4, "little"
        )
    else:  # duplicate a slice
        a = rng.randrange(len(buf))
        b = min(len(buf), a + rng.randint(1, 64))
        buf[a:a] = buf[a:b]
    return bytes(buf)


def _parse(data: bytes) -> None:
    try:
        read_elf_bytes(data, "fuzz.o")
    except BPFError as e:
        # the generic backstop must never be what catches it: every case has its own check
        assert "unchecked case" not in str(e), str(e)


@pytest.mark.parametrize("seed", range(2))
def test_mutated_elf_never_crashes(bpf_objs: dict[str, Path], seed: int) -> None:
    rng = random.Random(seed)
    seeds = [p.read_bytes() for p in [*bpf_objs.values(), *CORPUS]]
    deadline = time.monotonic() + 2.5
    n = 0
    while time.monotonic() < deadline:
        _parse(mutate(rng.choice(seeds), rng))  # anything but BPFError fails the test
        n += 1
    assert n > 50


def test_mutated_btf_never_crashes(bpf_objs: dict[str, Path]) -> None:
    from elftools.elf.elffile import ELFFile

    with open(bpf_objs["globals"], "rb") as f:
        sec = ELFFile(f).get_section_by_name(".BTF")
        assert sec is not None
        raw = sec.data()
    rng = random.Random(7)
    for _ in range(2000):
        data = mutate(raw, rng)
        try:
            spec = Spec(data)
            for t in spec.types[1:]:
                spec.type_name(t.id)
                with contextlib.suppress(BPFError):
                    spec.sizeof(t.id)
        except BPFError:
            pass


def test_hypothesis_target(bpf_objs: dict[str, Path]) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    seed = bpf_objs["legacy"].read_bytes()

    def run(pos: int, patch: bytes) -> None:
        _parse(seed[:pos] + patch + seed[pos + len(patch) :])

    given = hypothesis.given(st.integers(0, len(seed) - 1), st.binary(min_size=1, max_size=8))
    settings = hypothesis.settings(max_examples=300, deadline=None, database=None)
    settings(given(run))()
