"""The exceptions remora.bpf raises.

Two families, because callers react to them differently: `BPFSyscallError` means the kernel said
no (it carries errno, the command and a hint about the usual cause), `BPFLoadError` means our
input was bad (a corrupt ELF or BTF, an unknown section) and names what and where. Verifier
rejections are syscall errors that also carry the log and the failing source line.
"""

from __future__ import annotations

import errno as errno_mod
import os


class BPFError(Exception):
    """Base class of every error remora.bpf raises on purpose."""


class BPFLoadError(BPFError):
    """Input (ELF, BTF, section names, relocations) that cannot be loaded as given."""


class BPFTypeMismatchError(BPFError):
    """A Python key/value type disagrees with the map's BTF (size, member name or offset)."""


# Per-errno hints: the common reason the kernel returns this errno from bpf(2).
_HINTS: dict[int, str] = {
    errno_mod.EPERM: (
        "missing CAP_BPF/CAP_SYS_ADMIN (run as root), or kernel.unprivileged_bpf_disabled=1 "
        "forbids unprivileged bpf(2), or RLIMIT_MEMLOCK is too low on kernels before 5.11"
    ),
    errno_mod.EACCES: "the verifier rejected the program, or the object's mode forbids access",
    errno_mod.EINVAL: "an attr field, flag or size the kernel does not accept for this command",
    errno_mod.E2BIG: "an attr or object larger than the kernel supports",
    errno_mod.ENOENT: "no such element, pin path or kernel object",
    errno_mod.EEXIST: "element already exists (BPF_NOEXIST) or pin path is taken",
    errno_mod.ENOSPC: "the buffer (verifier log, data_out) or the map is full",
    errno_mod.ENOMEM: "kernel memory or memlock limit exhausted",
    errno_mod.EBADF: "a file descriptor passed to bpf(2) is closed or not a bpf object",
    524: "operation not supported for this map or program type (ENOTSUPP)",
    errno_mod.EOPNOTSUPP: "operation not supported for this map or program type",
    errno_mod.ENOSYS: "the kernel lacks bpf(2) (CONFIG_BPF_SYSCALL=n)",
    errno_mod.EFAULT: "a pointer in the attr is invalid (a remora bug)",
}


def hint_for(err: int) -> str:
    return _HINTS.get(err, "")


class BPFSyscallError(BPFError, OSError):
    """bpf(2) failed. `errno`, `command` (e.g. "MAP_CREATE") and `hint` say what and why."""

    def __init__(self, err: int, command: str, detail: str = "") -> None:
        self.command = command
        self.hint = hint_for(err)
        self.detail = detail
        name = errno_mod.errorcode.get(err, "ENOTSUPP" if err == 524 else str(err))
        # bpf(2) commands are upper case (MAP_CREATE); other calls, lower case, name themselves
        call = f"{command}()" if command.islower() else f"bpf({command})"
        msg = f"{call} failed: {name}: {os.strerror(err)}"
        if detail:
            msg += f" [{detail}]"
        if self.hint:
            msg += f" (hint: {self.hint})"
        super().__init__(err, msg)
        self.message = msg

    def __str__(self) -> str:
        return self.message


class VerifierError(BPFSyscallError):
    """The verifier said no: `log` is its full log, `source` the failing line if known."""

    def __init__(
        self, err: int, program: str, log: str, source: str | None, truncated: bool
    ) -> None:
        self.program = program
        self.log = log
        self.source = source
        self.truncated = truncated
        super().__init__(err, "PROG_LOAD", f"program {program!r}")
        tail = "\n".join(line for line in log.rstrip().splitlines()[-8:])
        parts = [self.message]
        if source:
            parts.append(f"failing instruction source: {source}")
        if tail:
            parts.append("verifier log (last lines):\n" + tail)
        if truncated:
            parts.append("(verifier log truncated)")
        self.message = "\n".join(parts)
