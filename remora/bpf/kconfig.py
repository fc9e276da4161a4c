"""The running kernel's config, as `.kconfig` externs see it.

The values come from `/proc/config.gz`, or else `/boot/config-$(uname -r)`, and are read once
per process. libbpf's own `LINUX_*` externs (the kernel version and two feature facts) are
computed here. A strong extern the kernel config lacks fails the load and names the extern. A
weak one reads as zero.
"""

from __future__ import annotations

import functools
import gzip
import os
import re

from remora.bpf.errors import BPFLoadError
from remora.bpf.externs import Extern

_CONFIG_PATHS = ("/proc/config.gz", "/boot/config-{release}")
_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_TRISTATE = {"n": 0, "y": 1, "m": 2}


@functools.cache
def kernel_config() -> tuple[str, dict[str, str]]:
    """(where it was read, CONFIG_* -> raw value). Raises BPFLoadError if there is none."""
    release = os.uname().release
    for template in _CONFIG_PATHS:
        path = template.format(release=release)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        text = gzip.decompress(raw) if path.endswith(".gz") else raw
        values = {}
        for line in text.decode(errors="replace").splitlines():
            m = _LINE.match(line)
            if m:
                values[m.group(1)] = m.group(2)
        return path, values
    tried = ", ".join(t.format(release=release) for t in _CONFIG_PATHS)
    raise BPFLoadError(f".kconfig: the kernel config is in none of {tried}")


def kernel_version(release: str | None = None) -> int:
    """KERNEL_VERSION(a, b, c) of `uname -r`, with the patch level capped at 255 as libbpf
    caps it (the macro has 8 bits for it)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release or os.uname().release)
    if m is None:
        raise BPFLoadError(f"LINUX_KERNEL_VERSION: cannot read a version from {release!r}")
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (a << 16) + (b << 8) + min(c, 255)


def _linux_value(name: str) -> str:
    if name == "LINUX_KERNEL_VERSION":
        return str(kernel_version())
    if name == "LINUX_HAS_BPF_COOKIE":  # bpf_get_attach_cookie(), since 5.15
        return "y" if kernel_version() >= (5 << 16) + (15 << 8) else "n"
    if name == "LINUX_HAS_SYSCALL_WRAPPER":
        from remora.bpf.ksyms import kallsyms

        machine = {"x86_64": "x64", "aarch64": "arm64"}.get(os.uname().machine, "")
        return "y" if f"__{machine}_sys_bpf" in kallsyms() else "n"
    raise BPFLoadError(f"extern {name!r}: not a LINUX_ value remora knows (.kconfig)")


def kconfig_data(externs: list[Extern], size: int) -> bytes:
    """The `.kconfig` map's value: every extern's bytes at its offset."""
    data = bytearray(size)
    config: dict[str, str] | None = None
    where = ""
    for ext in externs:
        if ext.name.startswith("LINUX_"):
            raw: str | None = _linux_value(ext.name)
        else:
            if config is None:
                where, config = kernel_config()
            raw = config.get(ext.name)
        if raw is None:
            if ext.weak:
                continue  # zero, as a weak extern the kernel lacks reads in libbpf
            raise BPFLoadError(
                f"extern {ext.name!r} (.kconfig) is not set in {where}; declare it __weak to "
                "read it as zero when absent"
            )
        data[ext.offset : ext.offset + ext.size] = encode_value(ext, raw)
    return bytes(data)


def encode_value(ext: Extern, raw: str) -> bytes:
    """One config value in the C type the extern was declared with, or a clear refusal."""
    what = f"extern {ext.name!r} (.kconfig, {ext.value_kind})"
    if raw in _TRISTATE:
        if ext.value_kind == "tristate":
            return _TRISTATE[raw].to_bytes(ext.size, "little")
        if ext.value_kind == "bool":
            if raw == "m":
                raise BPFLoadError(f"{what}: the value is 'm', which a bool cannot hold")
            return bytes([raw == "y"])
        if ext.value_kind == "char":
            return raw.encode()
        raise BPFLoadError(f"{what}: the value {raw!r} needs a bool, char or tristate extern")
    if raw.startswith('"'):
        if ext.value_kind != "chars" or len(raw) < 2 or not raw.endswith('"'):
            raise BPFLoadError(f"{what}: the value {raw} is a string; declare a char array")
        text = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\").encode()
        if len(text) >= ext.size:
            raise BPFLoadError(
                f"{what}: the value is {len(text)} characters, the array holds {ext.size - 1}"
            )
        return text + bytes(ext.size - len(text))
    try:
        number = int(raw, 0)
    except ValueError:
        raise BPFLoadError(f"{what}: cannot read the value {raw!r}") from None
    if ext.value_kind != "int":
        raise BPFLoadError(f"{what}: the value {raw} is a number; declare an integer extern")
    try:
        return number.to_bytes(ext.size, "little", signed=ext.signed)
    except OverflowError:
        raise BPFLoadError(f"{what}: the value {raw} does not fit in {ext.size} bytes") from None
