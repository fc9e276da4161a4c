"""`.kconfig` values: read from the running kernel's config and stored as the C type asks."""

from __future__ import annotations

import errno
import gzip
import os
from pathlib import Path

import pytest

from remora.bpf.collection import Collection
from remora.bpf.errors import BPFLoadError, BPFSyscallError
from remora.bpf.externs import KCONFIG_SEC, Extern
from remora.bpf.kconfig import encode_value, kernel_config, kernel_version


def _ext(kind: str, size: int, signed: bool = False) -> Extern:
    return Extern("CONFIG_X", "kconfig", False, value_kind=kind, size=size, signed=signed)


def _config() -> dict[str, str]:
    with open("/proc/config.gz", "rb") as f:
        lines = gzip.decompress(f.read()).decode().splitlines()
    return dict(line.split("=", 1) for line in lines if line.startswith("CONFIG_"))


def test_values_in_each_c_type() -> None:
    assert encode_value(_ext("bool", 1), "y") == b"\x01"
    assert encode_value(_ext("bool", 1), "n") == b"\x00"
    assert encode_value(_ext("tristate", 4), "m") == (2).to_bytes(4, "little")
    assert encode_value(_ext("char", 1), "m") == b"m"
    assert encode_value(_ext("int", 4), "250") == (250).to_bytes(4, "little")
    assert encode_value(_ext("int", 8), "0x1f") == (31).to_bytes(8, "little")
    assert encode_value(_ext("int", 2, signed=True), "-3") == (-3).to_bytes(
        2, "little", signed=True
    )
    assert encode_value(_ext("chars", 8), '"a\\"b"') == b'a"b' + bytes(5)


@pytest.mark.parametrize(
    ("kind", "size", "raw", "why"),
    [
        ("bool", 1, "m", "a bool cannot hold"),
        ("int", 4, "y", "needs a bool, char or tristate"),
        ("bool", 1, "3", "declare an integer extern"),
        ("int", 4, '"text"', "declare a char array"),
        ("chars", 4, '"toolong"', "the array holds 3"),
        ("int", 1, "300", "does not fit in 1 bytes"),
        ("int", 4, "-1", "does not fit in 4 bytes"),  # unsigned
        ("int", 4, "12abc", "cannot read the value"),
    ],
)
def test_values_that_do_not_fit_are_refused_by_name(
    kind: str, size: int, raw: str, why: str
) -> None:
    with pytest.raises(BPFLoadError) as ei:
        encode_value(_ext(kind, size), raw)
    assert "CONFIG_X" in str(ei.value) and why in str(ei.value)


def test_kernel_version_caps_the_patch_level_as_libbpf_does() -> None:
    assert kernel_version("6.18.44-fc-v1300") == (6 << 16) + (18 << 8) + 44
    assert kernel_version("5.4.300") == (5 << 16) + (4 << 8) + 255
    assert kernel_version("6.1") == (6 << 16) + (1 << 8)
    with pytest.raises(BPFLoadError):
        kernel_version("unknown")


def test_kernel_config_is_the_running_kernels() -> None:
    where, values = kernel_config()
    assert where == "/proc/config.gz"
    assert values == _config()


@pytest.mark.usefixtures("bpf_root")
def test_programs_read_the_running_kernels_values(bpf_objs: dict[str, Path]) -> None:
    config = _config()
    with Collection.load(
        bpf_objs["externs"], programs=["hz", "version", "bools", "localversion"]
    ) as c:
        assert c.btf_error == ""  # the extern-bearing BTF was made acceptable to the kernel
        assert c.programs["hz"].test_run().retval == int(config["CONFIG_HZ"])  # weak one is 0
        assert c.programs["version"].test_run().retval == kernel_version(os.uname().release)
        tristate = {"y": 1, "m": 2}[config["CONFIG_BPF_JIT"]]
        assert (
            c.programs["bools"].test_run().retval
            == 10 * (config["CONFIG_BPF_SYSCALL"] == "y") + tristate
        )
        local = config["CONFIG_LOCALVERSION"].strip('"').encode()
        assert c.programs["localversion"].test_run().retval == local[1] + (local[2] << 8)
        with pytest.raises(BPFSyscallError) as ei:  # frozen: programs and users only read it
            c.maps[KCONFIG_SEC][0] = bytes(c.maps[KCONFIG_SEC].value_size)
        assert ei.value.errno == errno.EPERM


@pytest.mark.usefixtures("bpf_root")
def test_a_strong_value_the_kernel_lacks_names_extern_and_program(
    bpf_objs: dict[str, Path],
) -> None:
    with pytest.raises(BPFLoadError) as ei:
        Collection.load(bpf_objs["unresolved"], programs=["needs_config"])
    message = str(ei.value)
    assert "program 'needs_config' cannot be loaded" in message
    assert "CONFIG_REMORA_NEVER_SET" in message and "__weak" in message
    with Collection.load(bpf_objs["unresolved"], programs=["fine"]) as c:
        assert c.programs["fine"].test_run(bytes(64)).retval == 3
