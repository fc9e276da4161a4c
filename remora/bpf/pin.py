"""bpffs: where pins live. Pinning needs a bpf filesystem; we can mount one if we are root."""

from __future__ import annotations

import ctypes
import os

from remora.bpf.errors import BPFError
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import FD
from remora.bpf.sys.syscall import bpf

BPF_FS_MAGIC = 0xCAFE4A11
DEFAULT_BPFFS = "/sys/fs/bpf"


class _Statfs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type is the first long.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


_libc = ctypes.CDLL(None, use_errno=True)


def is_bpffs(path: str | os.PathLike[str]) -> bool:
    buf = _Statfs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == BPF_FS_MAGIC)


def ensure_bpffs(path: str = DEFAULT_BPFFS) -> str:
    """Return `path` once a bpffs is mounted there, mounting it if needed (root only)."""
    if is_bpffs(path):
        return path
    os.makedirs(path, exist_ok=True)
    if _libc.mount(b"bpf", os.fsencode(path), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise BPFError(f"cannot mount bpffs at {path}: {os.strerror(err)}")
    return path


def check_pin_dir(path: str | os.PathLike[str], create: bool = False) -> None:
    """Pins outside bpffs fail with a confusing EPERM; say what is wrong instead.

    With `create`, a missing directory inside a bpffs is made, as `bpftool prog loadall` does.
    """
    if create and not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        if is_bpffs(parent):
            os.mkdir(path)
    if not is_bpffs(path):
        raise BPFError(f"{os.fspath(path)} is not on a bpf filesystem (mount -t bpf bpf DIR)")


def unpin(path: str | os.PathLike[str]) -> None:
    """Remove a pin. The object lives on while any fd or other pin still references it."""
    p = os.fspath(path)
    if not is_bpffs(os.path.dirname(p) or "."):
        raise BPFError(f"{p} is not on a bpf filesystem: refusing to unlink it as a pin")
    try:
        os.unlink(p)
    except OSError as e:
        raise BPFError(f"cannot unpin {p}: {e.strerror}") from None


def obj_pin(fd: int, path: str | os.PathLike[str]) -> None:
    p = ctypes.create_string_buffer(os.fsencode(path))
    bpf(t.Cmd.OBJ_PIN, t.ObjAttr(pathname=ctypes.addressof(p), bpf_fd=fd), f"path {path}")


def obj_get(path: str | os.PathLike[str], flags: int = 0) -> int:
    p = ctypes.create_string_buffer(os.fsencode(path))
    return bpf(
        t.Cmd.OBJ_GET, t.ObjAttr(pathname=ctypes.addressof(p), file_flags=flags), f"path {path}"
    )


class Pinnable:
    """`pin()`/`unpin()` for maps and programs alike; `_kind` names the object in errors."""

    _kind = "object"
    fd: FD
    name: str
    pinned: str | None

    def pin(self, path: str | os.PathLike[str]) -> None:
        obj_pin(self.fd.raw, path)
        self.pinned = os.fspath(path)

    def unpin(self) -> None:
        """Remove the pin made by pin() (or opened by open_pinned()); the fd stays valid."""
        if self.pinned is None:
            raise BPFError(f"{self._kind} {self.name!r} is not pinned")
        unpin(self.pinned)
        self.pinned = None
