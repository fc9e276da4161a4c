"""Possible CPUs: per-CPU maps hold one value slot per *possible* CPU, not per online CPU."""

from __future__ import annotations

import functools

from remora.bpf.errors import BPFError


def parse_cpu_list(text: str) -> int:
    """Count CPUs in a kernel cpulist such as "0-3,8,10-11" (the highest index + 1)."""
    highest = -1
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            highest = max(highest, int(hi or lo))
            int(lo)
        except ValueError:
            raise BPFError(f"malformed cpu list {text!r}") from None
    if highest < 0:
        raise BPFError(f"empty cpu list {text!r}")
    return highest + 1


@functools.cache
def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    with open(path) as f:
        return parse_cpu_list(f.read())
