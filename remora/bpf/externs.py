"""An object's extern symbols: `.kconfig` values, `.ksyms` kernel variables, and kfuncs.

clang leaves an extern as an undefined ELF symbol, plus a BTF VAR (or FUNC) with extern linkage
inside a `.kconfig` or `.ksyms` DATASEC. That DATASEC is how libbpf's conventions tell a config
value from a kernel symbol, so an extern without BTF cannot be told apart and is refused.

What is decided here needs no kernel: which externs exist, what each is, and where each
`.kconfig` value sits inside the read-only `.kconfig` array map that holds them all. Their values
and kernel ids are found when a program that uses them loads (`kconfig`, `ksyms`), so an object
loads anywhere as long as the programs asked for need nothing the kernel lacks.
"""

from __future__ import annotations

import dataclasses

from remora.bpf.btf.types import Kind, Spec, Type
from remora.bpf.elffile import STB_WEAK, Symbol
from remora.bpf.errors import BPFLoadError

KCONFIG_SEC = ".kconfig"
KSYMS_SEC = ".ksyms"
_INT_SIGNED = 1
_INT_CHAR = 2
_INT_BOOL = 4
_VAR_EXTERN = 2
_FUNC_EXTERN = 2


@dataclasses.dataclass
class Extern:
    """One extern: what it is, and for `.kconfig` values, how it is stored."""

    name: str
    kind: str  # "kconfig", "ksym" (a kernel variable) or "kfunc"
    weak: bool
    btf_type: int = 0  # the VAR's type (ksym, kconfig) or the FUNC (kfunc); 0 if void
    typed: bool = False  # ksym: resolved by BTF id (typed) or by kallsyms address (void)
    # .kconfig only: how the value is stored
    value_kind: str = ""  # "bool", "tristate", "char", "chars", "int"
    size: int = 0
    signed: bool = False
    offset: int = 0  # inside the .kconfig map's value

    @property
    def label(self) -> str:
        """How inspect names what a program needs, e.g. "kfunc bpf_task_from_pid (weak)"."""
        return f"{self.kind} {self.name}" + (" (weak)" if self.weak else "")


def collect_externs(symbols: list[Symbol], btf: Spec | None) -> dict[str, Extern]:
    """Every undefined global symbol that BTF files under `.kconfig` or `.ksyms`.

    Undefined symbols that are in neither are left out: a call to a function of another
    object, say, which the linker reports when a program reaches it.
    """
    undefined = {s.name: s for s in symbols if s.shndx <= 0 and s.name and s.bind != 0}
    if not undefined or btf is None:
        return {}
    out: dict[str, Extern] = {}
    for secname, kind in ((KCONFIG_SEC, "kconfig"), (KSYMS_SEC, "ksym")):
        ds = btf.by_name(secname, Kind.DATASEC)
        if ds is None:
            continue
        for si in ds.secinfo:
            t = btf.type(si.type)
            sym = undefined.get(t.name)
            if sym is None:
                continue
            weak = sym.bind == STB_WEAK
            if t.kind == Kind.FUNC:
                if kind != "ksym":
                    raise BPFLoadError(f"extern {t.name!r}: a function cannot be a {secname} value")
                out[t.name] = Extern(t.name, "kfunc", weak, btf_type=t.id, typed=True)
            elif t.kind == Kind.VAR:
                if t.linkage != _VAR_EXTERN:
                    raise BPFLoadError(f"extern {t.name!r}: its BTF variable is not extern")
                if kind == "ksym":
                    typed = btf.skip_mods(t.ref).kind != Kind.UNKN
                    out[t.name] = Extern(t.name, "ksym", weak, btf_type=t.ref, typed=typed)
                else:
                    out[t.name] = _kconfig_extern(btf, t, weak)
            else:
                raise BPFLoadError(f"{secname}: entry {t.name!r} is {t.kind.name}, not extern")
    _layout_kconfig(out)
    return out


def kconfig_size(externs: dict[str, Extern]) -> int:
    """Bytes of the `.kconfig` map's single value; 0 when the object has no kconfig extern."""
    ends = [e.offset + e.size for e in externs.values() if e.kind == "kconfig"]
    return (max(ends) + 7) & ~7 if ends else 0


def _kconfig_extern(btf: Spec, var: Type, weak: bool) -> Extern:
    """Which of libbpf's kconfig value kinds the variable's C type asks for."""
    t = btf.skip_mods(var.ref)
    ext = Extern(var.name, "kconfig", weak, btf_type=var.ref)
    if t.kind == Kind.ENUM and t.name == "libbpf_tristate":
        ext.value_kind, ext.size = "tristate", t.size
    elif t.kind == Kind.INT and t.int_encoding & _INT_BOOL:
        ext.value_kind, ext.size = "bool", 1
    elif t.kind == Kind.INT and t.size == 1 and (t.int_encoding & _INT_CHAR or t.name == "char"):
        ext.value_kind, ext.size = "char", 1
    elif t.kind == Kind.INT and t.size in (1, 2, 4, 8):
        ext.value_kind, ext.size = "int", t.size
        ext.signed = bool(t.int_encoding & _INT_SIGNED)
    elif t.kind == Kind.ARRAY:
        elem = btf.skip_mods(t.elem)
        if elem.kind != Kind.INT or elem.size != 1 or t.nelems == 0:
            raise BPFLoadError(f"extern {var.name!r}: a .kconfig array must be of char")
        ext.value_kind, ext.size = "chars", t.nelems
    else:
        raise BPFLoadError(
            f"extern {var.name!r}: type {btf.type_name(var.ref)} cannot hold a .kconfig value "
            "(use bool, char, an integer, enum libbpf_tristate or a char array)"
        )
    return ext


def _layout_kconfig(externs: dict[str, Extern]) -> None:
    """Widest alignment first, then by name, so the layout depends on nothing but the object."""

    def align(e: Extern) -> int:
        return 1 if e.value_kind == "chars" else e.size

    off = 0
    for e in sorted(
        (e for e in externs.values() if e.kind == "kconfig"), key=lambda e: (-align(e), e.name)
    ):
        a = align(e)
        off = (off + a - 1) // a * a
        e.offset = off
        off += e.size
