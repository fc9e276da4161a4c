"""CO-RE relocations against the running kernel.

Each program in progs/core.bpf.c reaches kernel structs through its own, deliberately wrong,
local definitions and writes what its relocations resolved to into its context. The values are
checked against vmlinux BTF as `bpftool btf dump` prints it (parsed here, independently of
remora's BTF code) and against /proc, and every program's kernel tag is checked against the
same object loaded by bpftool (libbpf), which shows the relocated instructions are identical.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from remora.bpf.btf import types as types_mod
from remora.bpf.btf.core import (
    POISON_IMM,
    Relo,
    Relocator,
    ReloKind,
    essential_len,
)
from remora.bpf.btf.kernel import VMLINUX, kernel_btf
from remora.bpf.btf.types import Kind
from remora.bpf.collection import Collection
from remora.bpf.elf import read_elf
from remora.bpf.elffile import ElfFile
from remora.bpf.errors import BPFLoadError, VerifierError
from remora.bpf.inspect import summarize
from tests.bpf.test_corpus import bpftool_view

_HEAD = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
_ITEM = re.compile(r"^\t'([^']*)'(.*)$")


@dataclass
class DumpType:
    id: int
    kind: str
    name: str
    attrs: dict[str, str]
    items: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def member(self, name: str) -> dict[str, str]:
        return next(a for n, a in self.items if n == name)


def _attrs(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


def parse_dump(text: str) -> dict[int, DumpType]:
    types: dict[int, DumpType] = {}
    cur: DumpType | None = None
    for line in text.splitlines():
        m = _HEAD.match(line)
        if m:
            cur = DumpType(int(m[1]), m[2], m[3], _attrs(m[4]))
            types[cur.id] = cur
            continue
        m = _ITEM.match(line)
        if m and cur is not None:
            cur.items.append((m[1], _attrs(m[2])))
    return types


class Dump:
    """`bpftool btf dump file F`, read the way a person reads it."""

    def __init__(self, path: str | Path) -> None:
        out = subprocess.run(
            ["bpftool", "btf", "dump", "file", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.types = parse_dump(out)
        self.named: dict[tuple[str, str], DumpType] = {}
        for t in self.types.values():
            self.named.setdefault((t.kind, t.name), t)

    def get(self, kind: str, name: str) -> DumpType:
        return self.named[(kind, name)]

    def size(self, tid: int) -> int:
        t = self.types[tid]
        if t.kind in ("INT", "STRUCT", "UNION", "ENUM", "ENUM64", "FLOAT"):
            return int(t.attrs["size"])
        if t.kind == "PTR":
            return 8
        if t.kind == "ARRAY":
            return int(t.attrs["nr_elems"]) * self.size(int(t.attrs["type_id"]))
        return self.size(int(t.attrs["type_id"]))  # typedef, const, volatile, type_tag

    def resolve(self, tid: int) -> DumpType:
        t = self.types[tid]
        while t.kind in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            t = self.types[int(t.attrs["type_id"])]
        return t


@pytest.fixture(scope="module")
def vmlinux() -> Dump:
    if shutil.which("bpftool") is None:
        pytest.fail("bpftool is required to read vmlinux BTF independently")
    return Dump(VMLINUX)


def run(obj: Path, prog: str, **kw: Any) -> list[int]:
    with Collection.load(obj, programs=[prog], **kw) as c:
        res = c.programs[prog].test_run(bytes(128))
    return list(struct.unpack("<16Q", res.data_out))


def _stat(field_no: int) -> int:
    """Field `field_no` (1-based, as in proc(5)) of this thread's /proc stat line."""
    text = Path(f"/proc/self/task/{threading.get_native_id()}/stat").read_text()
    return int(text.rsplit(")", 1)[1].split()[field_no - 3])


# sans-IO rules --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "essential"),
    [
        ("task_struct", "task_struct"),
        ("task_struct___remora", "task_struct"),
        ("task_struct___a___b", "task_struct___a"),
        ("foo____bar", "foo____bar"),  # four underscores: not a flavour separator
        ("foo___", "foo___"),
        ("___foo", "___foo"),
        ("a___b", "a"),
    ],
)
def test_flavour_suffix(name: str, essential: str) -> None:
    assert name[: essential_len(name)] == essential


def test_hostile_relocations_are_clean_errors(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["core_fail"])
    assert spec.btf is not None
    rel = Relocator(spec.btf, kernel_btf)
    task = spec.btf.by_name("task_struct", Kind.STRUCT)
    anon_t = spec.btf.by_name("anon_t", Kind.TYPEDEF)
    assert task is not None and anon_t is not None
    bad = [
        (Relo(0, task.id, "0:x", 0), "malformed access string"),
        (Relo(0, task.id, "", 0), "malformed access string"),
        (Relo(0, task.id, "0:99", 0), "member index 99 is beyond struct task_struct"),
        (Relo(0, task.id, "0:1", 13), "unknown CO-RE relocation kind 13"),
        (Relo(0, task.id, "0:1", int(ReloKind.TYPE_SIZE)), "not '0'"),
        (Relo(0, task.id, "0", int(ReloKind.ENUMVAL_VALUE)), "enumerator index 0 is not in"),
        (Relo(0, anon_t.ref, "0:0", 0), "anonymous types cannot be matched"),
        (Relo(0, 99999, "0", 8), "no type with id 99999"),
    ]
    for relo, why in bad:
        with pytest.raises(BPFLoadError, match=why):
            rel.apply(bytearray(16), [relo])


class _Builder:
    """A hand-made BTF blob, for rules that no kernel type happens to exercise."""

    def __init__(self) -> None:
        self.strs = b"\0"
        self.recs = b""
        self.count = 0

    def _name(self, name: str) -> int:
        if not name:
            return 0
        self.strs += name.encode() + b"\0"
        return len(self.strs) - len(name) - 1

    def _add(self, rec: bytes) -> int:
        self.recs += rec
        self.count += 1
        return self.count

    def int_(self, name: str = "int") -> int:
        return self._add(struct.pack("<IIII", self._name(name), 1 << 24, 4, (1 << 24) | 32))

    def enum(self, name: str, values: list[str]) -> int:
        rec = struct.pack("<III", self._name(name), (6 << 24) | len(values), 4)
        for i, v in enumerate(values):
            rec += struct.pack("<Ii", self._name(v), i)
        return self._add(rec)

    def struct_(self, name: str, members: list[tuple[str, int, int]]) -> int:
        rec = struct.pack("<III", self._name(name), (4 << 24) | len(members), 16)
        for m, tid, bits in members:
            rec += struct.pack("<III", self._name(m), tid, bits)
        return self._add(rec)

    def spec(self) -> types_mod.Spec:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.recs), len(self.recs), 0)
        raw = hdr + self.recs + self.strs
        return types_mod.Spec(raw[:20] + struct.pack("<I", len(self.strs)) + raw[24:])


class _SpecTarget:
    """`core.Target` over a fully parsed Spec."""

    def __init__(self, spec: types_mod.Spec) -> None:
        self.spec = spec

    def type(self, tid: int) -> types_mod.Type:
        return self.spec.type(tid)

    def named_like(self, essential: str) -> list[int]:
        return [
            t.id
            for t in self.spec.types
            if t.name == essential or t.name.startswith(essential + "___")
        ]


def _mov(imm: int) -> bytearray:
    return bytearray(struct.pack("<BBhi", 0xB7, 0, 0, imm))  # r0 = imm (ALU64 MOV K)


def _imm(insns: bytearray) -> int | str:
    code, _, _, imm = struct.unpack("<BBhi", insns)
    return "poison" if code == 0x85 and imm == POISON_IMM else imm


def test_candidates_are_narrowed_and_must_agree() -> None:
    local = _Builder()
    i = local.int_()
    foo = local.struct_("foo", [("a", i, 0), ("b", i, 32), ("c", i, 64)])
    targ = _Builder()
    ti = targ.int_()
    targ.struct_("foo", [("a", ti, 0), ("b", ti, 32)])
    targ.struct_("foo___v1", [("a", ti, 0), ("c", ti, 64), ("b", ti, 96)])
    target = _SpecTarget(targ.spec())
    lspec = local.spec()

    def offset(rel: Relocator, access: str, local_value: int) -> int | str:
        insns = _mov(local_value)
        rel.apply(insns, [Relo(0, foo, access, int(ReloKind.FIELD_BYTE_OFFSET))])
        return _imm(insns)

    rel = Relocator(lspec, lambda: target)
    assert offset(rel, "0:0", 0) == 0  # both candidates agree on a
    assert offset(rel, "0:2", 8) == 8  # only foo___v1 has c: the list narrows to it
    assert offset(rel, "0:1", 4) == 12  # so b is foo___v1's, with no ambiguity
    with pytest.raises(BPFLoadError, match="different offsets"):
        offset(Relocator(lspec, lambda: target), "0:1", 4)


def test_enum_members_match_by_enum_name() -> None:
    local = _Builder()
    color = local.enum("color", ["RED"])
    bar = local.struct_("bar", [("c", color, 0)])
    baz = local.struct_("baz", [("c", color, 0)])
    targ = _Builder()
    tcolor = targ.enum("color___v2", ["RED"])
    other = targ.enum("shade", ["RED"])
    targ.struct_("bar", [("pad", tcolor, 0), ("c", tcolor, 32)])
    targ.struct_("baz", [("c", other, 0)])
    target = _SpecTarget(targ.spec())
    rel = Relocator(local.spec(), lambda: target)
    insns = _mov(0) + _mov(0)
    kind = int(ReloKind.FIELD_BYTE_OFFSET)
    rel.apply(insns, [Relo(0, bar, "0:0", kind), Relo(1, baz, "0:0", kind)])
    assert (_imm(insns[:8]), _imm(insns[8:])) == (4, "poison")


# the running kernel ---------------------------------------------------------------------------
def test_fields(bpf_objs: dict[str, Path], vmlinux: Dump, bpf_root: None) -> None:
    v = run(bpf_objs["core"], "core_fields")
    task = vmlinux.get("STRUCT", "task_struct")
    off = {n: int(a["bits_offset"]) // 8 for n, a in task.items}
    comm = task.member("comm")
    flags_t = vmlinux.resolve(int(task.member("flags")["type_id"]))
    assert v[0] == os.getpid() and v[1] == threading.get_native_id()  # t->tgid, t->pid
    assert v[2] == off["tgid"]
    assert v[3] == vmlinux.size(int(comm["type_id"]))
    assert v[4:6] == [1, 0]  # exists: pid, remora_no_such_field
    assert v[6] == 1 and flags_t.attrs["encoding"] == "(none)" and v[7] == 0  # signedness
    assert v[8] == _stat(9)  # task->flags, read as 4 bytes though declared as 8 locally
    assert v[9] == off["comm"] + 2
    assert v[10] == _stat(18) + 100  # prio (proc(5) shows prio - MAX_RT_PRIO)
    assert v[11] == 7777  # the poisoned read is dead code
    assert v[12] == ord(Path("/proc/self/comm").read_text()[0])


def test_bitfields(bpf_objs: dict[str, Path], vmlinux: Dump, bpf_root: None) -> None:
    v = run(bpf_objs["core"], "core_bits")
    task = vmlinux.get("STRUCT", "task_struct")
    word = v[5]  # the 4-byte storage unit at the relocated byte offset
    for name, (val, off, lshift, rshift) in {
        "init_private_fork_class": (v[0], v[1], v[3], v[4]),
        "in_execve": (v[6], v[7], v[8], v[9]),
    }.items():
        m = task.member(name)
        bit, bits = int(m["bits_offset"]), int(m["bitfield_size"])
        unit = vmlinux.size(int(m["type_id"]))
        assert unit == 4 and (off, v[2]) == (bit // 32 * 4, unit)
        assert lshift == 64 - (bit % 32 + bits) and rshift == 64 - bits
        assert val == (word >> (bit % 32)) & ((1 << bits) - 1), name
    assert v[10] == 0  # unsigned


def test_flavours(bpf_objs: dict[str, Path], vmlinux: Dump, bpf_root: None) -> None:
    v = run(bpf_objs["core"], "core_flavour")
    tgid = int(vmlinux.get("STRUCT", "task_struct").member("tgid")["bits_offset"]) // 8
    assert v[:4] == [os.getpid(), 0, 1, tgid]


def test_types(bpf_objs: dict[str, Path], vmlinux: Dump, bpf_root: None) -> None:
    v = run(bpf_objs["core"], "core_types")
    task = vmlinux.get("STRUCT", "task_struct")
    local = Dump(bpf_objs["core"]).get("STRUCT", "task_struct")
    assert v[0] == int(task.attrs["size"])
    assert v[1:3] == [1, 0]  # exists: task_struct, remora_no_such_type
    assert v[3] == task.id and v[4] == local.id  # kernel and local type ids
    assert v[5] == 4 and v[9] == vmlinux.get("TYPEDEF", "pid_t").id
    assert v[6:9] == [1, int(task.attrs["size"]), 0]  # a flavour; a missing type's size is 0


def test_enums(bpf_objs: dict[str, Path], vmlinux: Dump, bpf_root: None) -> None:
    v = run(bpf_objs["core"], "core_enums")
    pid_type = dict((n, int(a["val"])) for n, a in vmlinux.get("ENUM", "pid_type").items)
    iv = vmlinux.get("ENUM64", "blake2b_iv").items[0][1]["val"]
    assert v[0] == pid_type["PIDTYPE_SID"]
    assert v[1:3] == [0, 1]  # exists: PIDTYPE_REMORA, PIDTYPE_SID
    assert v[3] == int(iv.removesuffix("ULL")) > 1 << 32  # an ENUM64 value, via ld_imm64
    assert v[4] == 5555  # the poisoned value is dead code
    assert v[5] == pid_type["PIDTYPE_TGID"] and v[6] == 1
    assert v[7] == pid_type["PIDTYPE_PGID"]  # PIDTYPE_PGID___remora


def test_subprogram_copies_are_relocated(
    bpf_objs: dict[str, Path], vmlinux: Dump, bpf_root: None
) -> None:
    task = vmlinux.get("STRUCT", "task_struct")
    pid_off = int(task.member("pid")["bits_offset"]) // 8
    assert run(bpf_objs["core"], "core_sub_a")[0] == os.getpid() + pid_off
    v = run(bpf_objs["core"], "core_sub_b")
    assert v[:2] == [os.getpid() + pid_off, int(task.member("comm")["bits_offset"]) // 8]


def test_probe_reads(bpf_objs: dict[str, Path], bpf_root: None) -> None:
    assert run(bpf_objs["core"], "core_probe")[:2] == [os.getppid(), os.getpid()]


def test_kernel_tags_equal_libbpf(bpf_objs: dict[str, Path], bpf_root: None) -> None:
    ref = bpftool_view(bpf_objs["core"])
    assert ref is not None, "bpftool could not load core.o"
    theirs = {str(p["name"]): str(p["tag"]) for p in ref[0]}
    with Collection.load(bpf_objs["core"]) as c:
        ours = {p.info().name.decode(): bytes(p.info().tag).hex() for p in c.programs.values()}
    assert len(ours) == 9 and ours == theirs


def _set_core_kind(obj: bytes, old: int, new: int) -> bytes:
    """Rewrite the kind of every CO-RE record `old` in .BTF.ext to `new`."""
    elf = ElfFile(obj)
    sec = elf.section(".BTF.ext")
    assert sec is not None
    data = bytearray(obj)
    base = sec.offset
    (hdr_len,) = struct.unpack_from("<I", data, base + 4)
    core_off, core_len = struct.unpack_from("<II", data, base + 24)
    pos = base + hdr_len + core_off
    end = pos + core_len
    (rec_size,) = struct.unpack_from("<I", data, pos)
    pos += 4
    changed = 0
    while pos < end:
        _, count = struct.unpack_from("<II", data, pos)
        pos += 8
        for i in range(count):
            at = pos + i * rec_size + 12
            if struct.unpack_from("<I", data, at)[0] == old:
                struct.pack_into("<I", data, at, new)
                changed += 1
        pos += count * rec_size
    assert changed
    return bytes(data)


def test_type_matches(bpf_objs: dict[str, Path], tmp_path: Path, bpf_root: None) -> None:
    exists = run(bpf_objs["core_match"], "core_match")
    assert exists[:7] == [1] * 7
    patched = tmp_path / "core_match_12.o"
    patched.write_bytes(_set_core_kind(bpf_objs["core_match"].read_bytes(), 8, 12))
    spec = read_elf(patched)
    assert {r.kind for r in spec.programs["core_match"].core_relos} == {ReloKind.TYPE_MATCHES}
    # same; wider int; extra member; enum by names; extra enumerator; via pointer; typedef
    assert run(patched, "core_match")[:7] == [1, 0, 0, 1, 0, 1, 1]
    ref = bpftool_view(patched)
    assert ref is not None
    with Collection.load(patched) as c:
        assert bytes(c.programs["core_match"].info().tag).hex() == ref[0][0]["tag"]


def test_unresolved_relocations_poison_only_their_program(
    bpf_objs: dict[str, Path], bpf_root: None
) -> None:
    obj = bpf_objs["core_fail"]
    assert run(obj, "fine")[0] == os.getpid()
    for prog, path in [
        ("reads_missing", "(remora_no_such_field)"),
        ("wrong_width", "(pid)"),  # signed, and 8 bytes locally against the kernel's 4
        ("no_typedef", "typedef anon_t"),
    ]:
        with pytest.raises(VerifierError) as ei:
            Collection.load(obj, programs=[prog])
        msg = str(ei.value)
        assert f"invalid func unknown#{POISON_IMM}" in ei.value.log
        assert "unresolved CO-RE relocations (poisoned instructions)" in msg and path in msg
    assert bpftool_view(obj) is None  # libbpf refuses the same object


def test_instruction_that_disagrees_with_btf_is_refused(
    bpf_objs: dict[str, Path], bpf_root: None
) -> None:
    spec = read_elf(bpf_objs["core"])
    ps = spec.programs["core_fields"]
    relo = next(r for r in ps.core_relos if r.kind == ReloKind.FIELD_BYTE_SIZE)
    insns = bytearray(ps.insns)
    struct.pack_into("<i", insns, relo.insn * 8 + 4, 17)  # clang wrote 16, sizeof(comm)
    ps.insns = bytes(insns)
    want = (
        r"program 'core_fields' cannot be loaded: CO-RE field_byte_size of struct task_struct, "
        r"access '0:3' \(comm\), at insn \d+: the instruction's immediate is 17, but the "
        r"object's own BTF gives 16"
    )
    with pytest.raises(BPFLoadError, match=want):
        Collection.load(spec, programs=["core_fields"])
    with Collection.load(spec, programs=["core_flavour"]) as c:  # its neighbour still loads
        assert c.programs["core_flavour"].test_run(bytes(128)).retval == 0


def _stand_in_btf(tmp_path: Path) -> Path:
    src = tmp_path / "standin.c"
    src.write_text(
        "typedef int pid_t;\n"
        "struct task_struct { char pad[100]; pid_t pid; int tgid; char comm[8]; };\n"
        "enum pid_type { PIDTYPE_PID, PIDTYPE_SID = 42 };\n"
        "struct task_struct task; enum pid_type kind; pid_t p;\n"
    )
    obj = tmp_path / "standin.o"
    # An x86-64 object whose DWARF pahole turns into .BTF, the way vmlinux gets its BTF.
    if shutil.which("pahole") is None:
        pytest.fail("pahole is required to make a stand-in kernel BTF (apt-get install dwarves)")
    subprocess.run(["clang", "-g", "-c", str(src), "-o", str(obj)], check=True)
    subprocess.run(["pahole", "-J", str(obj)], check=True, capture_output=True)
    return obj


def test_stand_in_btf_file(bpf_objs: dict[str, Path], tmp_path: Path, bpf_root: None) -> None:
    elf_btf = _stand_in_btf(tmp_path)
    raw = tmp_path / "standin.btf"
    subprocess.run(["objcopy", f"--dump-section=.BTF={raw}", str(elf_btf)], check=True)
    d = Dump(raw)
    task = d.get("STRUCT", "task_struct")
    for path in (elf_btf, raw):  # an ELF file with .BTF, or raw BTF as /sys/kernel/btf has
        v = run(bpf_objs["core"], "core_types", kernel_btf=path)
        assert v[:4] == [int(task.attrs["size"]), 1, 0, task.id]
        assert v[5] == 4 and v[9] == d.get("TYPEDEF", "pid_t").id
    with pytest.raises(BPFLoadError, match=r"kernel BTF /no/such\.btf unavailable"):
        Collection.load(bpf_objs["core"], programs=["core_types"], kernel_btf="/no/such.btf")


def test_core_loads_never_parse_all_of_vmlinux(
    bpf_objs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, bpf_root: None
) -> None:
    big: list[int] = []
    real_init = types_mod.Spec.__init__

    def spying_init(self: types_mod.Spec, raw: bytes) -> None:
        if len(raw) > 1 << 20:
            big.append(len(raw))
        real_init(self, raw)

    monkeypatch.setattr(types_mod.Spec, "__init__", spying_init)
    kernel_btf.cache_clear()
    t0 = time.perf_counter()
    with Collection.load(bpf_objs["core"]) as c:
        elapsed = time.perf_counter() - t0
        assert len(c.programs) == 9
    kb = kernel_btf()
    total = len(kb._index())
    print(f"CO-RE load of core.o: {elapsed * 1000:.0f} ms, {kb.decoded} of {total} types decoded")
    assert not big, "a load parsed a whole BTF blob the size of vmlinux"
    assert 0 < kb.decoded < 100 and total > 10_000


def test_inspect_counts_relocations(bpf_objs: dict[str, Path]) -> None:
    spec = read_elf(bpf_objs["core"])
    rows = {p["name"]: p for p in summarize(spec)["programs"]}
    assert all(p["note"] == "" for p in rows.values())
    assert {n: p["core_relos"] for n, p in rows.items()} == {
        n: len(p.core_relos) for n, p in spec.programs.items()
    }
    assert rows["core_fields"]["core_relos"] == 13 and rows["core_sub_a"]["core_relos"] == 2
    # the subprogram's relocations follow its copy to the end of the caller
    sub = spec.programs["core_sub_a"]
    assert max(r.insn for r in sub.core_relos) >= sub.insn_count - 4
