"""`Collection`: every map and program of one object, loaded, owned and released together.

Load order matters and mirrors what the kernel needs: BTF first (maps and programs reference
it), then maps (programs embed their fds), global data written before `.rodata` is frozen,
programs next, and last the `values = {...}` initialisers of prog arrays and maps-in-maps
(which need the program and inner map fds). If any step fails, everything created so far is
closed before the error propagates, so a failed load leaks nothing.

CO-RE relocations are applied per program as it loads, against the running kernel's BTF (read
lazily, once per process) or a stand-in BTF file (`kernel_btf=`), so a program whose
relocations fail is refused by name while its neighbours load.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from remora.bpf.btf import kernel as kernel_mod
from remora.bpf.btf.core import POISON_IMM, Relocator, Target
from remora.bpf.btf.load import load_btf
from remora.bpf.btf.types import Kind
from remora.bpf.elf import CollectionSpec, read_elf
from remora.bpf.errors import BPFError, BPFLoadError, BPFSyscallError, VerifierError
from remora.bpf.externs import KCONFIG_SEC
from remora.bpf.kconfig import kconfig_data
from remora.bpf.ksyms import resolve as resolve_externs
from remora.bpf.maps import Map, MapSpec
from remora.bpf.pin import check_pin_dir
from remora.bpf.prog import Program, ProgramSpec
from remora.bpf.sys.fd import FD, Closing

PIN_BY_NAME = 1


class Collection(Closing):
    """Loaded programs and maps by name. Use as a context manager, or call close()."""

    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.btf_fd: FD | None = None
        self.btf_error: str = ""
        self.kernel_btf = kernel_mod.VMLINUX
        self._core: Relocator | None = None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | CollectionSpec,
        constants: dict[str, Any] | None = None,
        map_pins: str | os.PathLike[str] | None = None,
        programs: Iterable[str] | None = None,
        log_level: int = 0,
        kernel_btf: str | os.PathLike[str] | None = None,
    ) -> Collection:
        """Load an object. `programs` limits loading to those programs and the maps they use.

        `kernel_btf` names a BTF file (raw, or an ELF file with a .BTF section) that CO-RE
        relocations resolve against instead of /sys/kernel/btf/vmlinux, for kernels that ship
        no BTF; as in libbpf, it is used for CO-RE only, not for attach targets or kfuncs.
        """
        spec = path if isinstance(path, CollectionSpec) else read_elf(path)
        if constants:
            spec.set_constants(constants)
        coll = cls(spec)
        if kernel_btf is not None:
            # Checked now, not when a CO-RE relocation first needs it: a wrong path given for
            # an object without CO-RE would otherwise pass unnoticed.
            if not os.path.isfile(kernel_btf):
                raise BPFLoadError(f"kernel BTF {os.fspath(kernel_btf)} unavailable: no such file")
            coll.kernel_btf = os.fspath(kernel_btf)
        try:
            coll._load(map_pins, None if programs is None else list(programs), log_level)
        except BaseException:
            coll.close()
            raise
        return coll

    def _load(self, map_pins: Any, only: list[str] | None, log_level: int) -> None:
        spec = self.spec
        progs = spec.programs
        if only is not None:
            missing = [p for p in only if p not in progs]
            if missing:
                raise BPFLoadError(
                    f"{spec.path}: no program {missing[0]!r} (programs: {', '.join(progs)})"
                )
            progs = {n: progs[n] for n in only}
            wanted = {m for p in progs.values() for m in p.maps_used}
            wanted |= self._inner_maps(wanted)
            maps = {n: m for n, m in spec.maps.items() if n in wanted}
        else:
            maps = spec.maps
        if spec.btf_raw is not None:
            try:
                self.btf_fd = load_btf(spec.btf_raw)
            except BPFSyscallError as e:
                # Programs still load without BTF; they only lose source lines in errors.
                self.btf_error = str(e)
        btf = self.btf_fd.raw if self.btf_fd is not None else 0
        for name, ms in maps.items():
            self.maps[name] = self._make_map(ms, btf, map_pins)
        for name, ps in progs.items():
            self.programs[name] = self._load_program(ps, btf, log_level)
        for name, ms in maps.items():
            for index, (kind, target) in ms.contents:
                if kind == "prog" and target not in self.programs:
                    continue  # `programs=` left that tail-call target out
                obj: Map | Program = self.programs[target] if kind == "prog" else self.maps[target]
                self.maps[name][index] = obj

    def _inner_maps(self, wanted: set[str]) -> set[str]:
        """Maps that `values = {...}` of the wanted maps put inside them."""
        extra: set[str] = set()
        for name in wanted:
            for _, (kind, target) in self.spec.maps[name].contents:
                if kind == "map":
                    extra.add(target)
        return extra

    def _make_map(self, ms: MapSpec, btf: int, map_pins: Any) -> Map:
        pin_path = None
        if ms.pinning == PIN_BY_NAME and map_pins is not None:
            check_pin_dir(map_pins)
            pin_path = Path(map_pins) / ms.name
            if pin_path.exists():
                m = Map.open_pinned(pin_path)
                why = ms.compatible(m.info())
                if why is not None:
                    m.close()
                    raise BPFLoadError(f"pinned map {pin_path} does not match {ms.name!r}: {why}")
                m.spec = ms
                return m
        initial = ms.initial_data
        if ms.name == KCONFIG_SEC and initial is None:
            initial = self._kconfig_value(ms)
        m = Map.create(ms, btf_fd=btf)
        try:
            if initial is not None:
                m.update_bytes(bytes(4), initial)
            if ms.freeze:
                m.freeze()
            if pin_path is not None:
                m.pin(pin_path)
        except BaseException:
            m.close()
            raise
        return m

    def _kconfig_value(self, ms: MapSpec) -> bytes:
        kconfig = [e for e in self.spec.externs.values() if e.kind == "kconfig"]
        try:
            return kconfig_data(kconfig, ms.value_size)
        except BPFLoadError as e:
            users = [p.name for p in self.spec.programs.values() if KCONFIG_SEC in p.maps_used]
            who = ", ".join(repr(u) for u in users) or "no program"
            raise BPFLoadError(f"program {who} cannot be loaded: {e}") from None

    def _load_program(self, ps: ProgramSpec, btf: int, log_level: int) -> Program:
        if ps.unloadable_reason:
            raise BPFLoadError(f"program {ps.name!r} cannot be loaded: {ps.unloadable_reason}")
        insns = bytearray(ps.insns)
        for r in ps.relocs:
            m = self.maps.get(r.target)
            if m is None:
                raise BPFLoadError(
                    f"program {ps.name!r} uses map {r.target!r}, which is not loaded"
                )
            struct.pack_into("<i", insns, r.insn * 8 + 4, m.fd.raw)
        poisoned: list[str] = []
        try:
            if ps.core_relos:
                poisoned = self._relocator().apply(insns, ps.core_relos)
            resolve_externs(insns, ps.externs, self.spec.externs, self.spec.btf)
        except BPFLoadError as e:
            raise BPFLoadError(f"program {ps.name!r} cannot be loaded: {e}") from None
        if ps.attach_to and not ps.attach_btf_id:
            kind = Kind.TYPEDEF if ps.attach_to.startswith("btf_trace_") else Kind.FUNC
            try:
                ps.attach_btf_id = kernel_mod.kernel_btf().find(ps.attach_to, kind)
            except BPFLoadError as e:
                raise BPFLoadError(
                    f"program {ps.name!r} ({ps.section}): attach target not found: {e}; "
                    "it needs a target that only an attach can provide"
                ) from None
        loadable = ProgramSpec(**{**ps.__dict__, "insns": bytes(insns)})
        try:
            return Program.load(loadable, btf_fd=btf, log_level=log_level)
        except VerifierError as e:
            if poisoned and f"unknown#{POISON_IMM}" in e.log:
                # The verifier reached an instruction that CO-RE could not relocate: say which.
                e.message += "\nunresolved CO-RE relocations (poisoned instructions):\n  "
                e.message += "\n  ".join(poisoned)
            raise

    def _relocator(self) -> Relocator:
        if self._core is None:
            if self.spec.btf is None:
                raise BPFLoadError("CO-RE relocations without the object's BTF")
            self._core = Relocator(self.spec.btf, self._target)
        return self._core

    def _target(self) -> Target:
        try:
            if self.kernel_btf == kernel_mod.VMLINUX:
                return kernel_mod.kernel_btf()  # the same cache entry as attach lookups
            return kernel_mod.kernel_btf(self.kernel_btf)
        except BPFLoadError as e:
            if self.kernel_btf == kernel_mod.VMLINUX:
                raise BPFLoadError(
                    f"{e} (name a BTF file for this kernel with kernel_btf=...)"
                ) from None
            raise

    # pins ---------------------------------------------------------------------------------------
    def pin(self, directory: str | os.PathLike[str]) -> list[str]:
        """Pin every map and program under `directory` (bpffs; made if missing); returns the
        paths."""
        check_pin_dir(directory, create=True)
        paths = []
        for name, m in self.maps.items():
            p = Path(directory) / ("map_" + name.lstrip(".").replace("/", "_"))
            m.pin(p)
            paths.append(str(p))
        for name, prog in self.programs.items():
            p = Path(directory) / ("prog_" + name)
            prog.pin(p)
            paths.append(str(p))
        return paths

    # lifetime -----------------------------------------------------------------------------------
    def close(self) -> None:
        for prog in self.programs.values():
            prog.close()
        for m in self.maps.values():
            m.close()
        if self.btf_fd is not None:
            self.btf_fd.close()

    def variable(self, name: str) -> bytes:
        """Current value of a global variable, read from its (loaded) data map."""
        var = self.spec.variables.get(name)
        if var is None:
            raise BPFError(f"no global variable {name!r}")
        m = self.maps[var.map_name]
        value = m.lookup(0)
        raw = value if isinstance(value, bytes) else int(value).to_bytes(m.value_size, "little")
        return raw[var.offset : var.offset + var.size]
