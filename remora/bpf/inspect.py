"""A plain-data summary of a `CollectionSpec`, shared by `remora bpf inspect` text and JSON.

What inspect prints is bounded by the object's size, not by what the object claims: a variable's
value is shown up to `VALUE_LIMIT` bytes (a 100-byte object can declare a 256 MiB `.bss`), and
names longer than `NAME_LIMIT` characters (one long BTF name can be shared by every variable)
are cut, both marked so nobody mistakes a cut value for the whole.
"""

from __future__ import annotations

from typing import Any

from remora.bpf.elf import CollectionSpec, VariableSpec
from remora.bpf.maps import MapSpec

VALUE_LIMIT = 64
NAME_LIMIT = 128


def _clip(name: str) -> str:
    return name if len(name) <= NAME_LIMIT else name[:NAME_LIMIT] + "..."


def _btf_name(ref: Any) -> str:
    if ref is None:
        return ""
    btf, tid = ref
    return _clip(str(btf.type_name(tid)))


def _map_row(name: str, m: MapSpec) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "type": m.type.name.lower(),
        "key_size": m.key_size,
        "value_size": m.value_size,
        "max_entries": m.max_entries,
        "flags": m.flags,
        "key_type": _btf_name(m.key_type),
        "value_type": _btf_name(m.value_type),
    }
    if m.inner is not None:
        row["inner"] = _map_row(m.inner.name, m.inner)
    if m.pinning:
        row["pinning"] = "by_name" if m.pinning == 1 else m.pinning
    if m.unsupported:
        row["note"] = m.unsupported
    if m.contents:
        row["initial_values"] = {str(i): f"{k}:{v}" for i, (k, v) in m.contents}
    return row


def summarize(spec: CollectionSpec) -> dict[str, Any]:
    return {
        "path": spec.path,
        "license": spec.license,
        "kern_version": spec.kern_version,
        "btf": spec.btf is not None,
        "programs": [
            {
                "name": p.name,
                "section": p.section,
                "type": p.type.name.lower(),
                "insns": p.insn_count,
                "maps": p.maps_used,
                "attach_to": p.attach_to,
                "note": p.unloadable_reason,
                "needs": p.needs,
                "line_info": len(p.lines),
                "core_relos": len(p.core_relos),  # applied against the kernel's BTF at load
            }
            for p in spec.programs.values()
        ],
        "externs": [
            {"name": _clip(e.name), "kind": e.kind, "weak": e.weak} for e in spec.externs.values()
        ],
        "maps": [_map_row(n, m) for n, m in spec.maps.items()],
        "variables": [_variable_row(v) for v in spec.variables.values()],
    }


def _variable_row(v: VariableSpec) -> dict[str, Any]:
    value = v.get(VALUE_LIMIT)
    return {
        "name": v.name,
        "section": v.map_name,
        "offset": v.offset,
        "size": v.size,
        "type": _clip(v.type_name),
        "constant": v.constant,
        "value": value.hex(),  # the first VALUE_LIMIT bytes; value_truncated says if cut
        "value_truncated": v.size > len(value),
        # Ints show as numbers; arrays (strings) and structs stay bytes.
        "int": int.from_bytes(value, "little") if v.scalar else None,
    }


def render_text(info: dict[str, Any]) -> str:
    """Three tables with headers; notes and map lists trail each program's row."""
    out = [f"{info['path']}: license {info['license']!r}, BTF {'yes' if info['btf'] else 'no'}"]
    if info["kern_version"]:
        out[0] += f", kern_version {info['kern_version']:#x}"
    out.append(f"programs ({len(info['programs'])}):")
    if info["programs"]:
        out.append(f"  {'NAME':<24} {'SECTION':<32} {'TYPE':<18} {'INSNS':>5}  MAPS")
    for p in info["programs"]:
        line = f"  {p['name']:<24} {p['section']:<32} {p['type']:<18} {p['insns']:>5}"
        line += f"  {', '.join(p['maps']) or '-'}"
        if p["note"]:
            line += f"  [{p['note']}]"
        out.append(line)
        if p["needs"]:
            out.append(f"    needs: {', '.join(p['needs'])}")
        if p["core_relos"]:
            out.append(f"    CO-RE relocations: {p['core_relos']}")
    out.append(f"maps ({len(info['maps'])}):")
    if info["maps"]:
        out.append(
            f"  {'NAME':<24} {'TYPE':<18} {'KEY':>4} {'VALUE':>6} {'MAX_ENTRIES':>11}  BTF TYPES"
        )
    for m in info["maps"]:
        types = " -> ".join(x for x in (m["key_type"], m["value_type"]) if x) or "-"
        out.append(
            f"  {m['name']:<24} {m['type']:<18} {m['key_size']:>4} {m['value_size']:>6}"
            f" {m['max_entries']:>11}  {types}" + (f"  [{m['note']}]" if "note" in m else "")
        )
    if info["externs"]:
        out.append(f"externs ({len(info['externs'])}):")
        for e in info["externs"]:
            out.append(f"  {e['name']:<32} {e['kind']:<8} {'weak' if e['weak'] else 'strong'}")
    if info["variables"]:
        out.append(f"variables ({len(info['variables'])}):")
        out.append(f"  {'NAME':<24} {'SECTION':<16} {'OFFSET':>6} {'SIZE':>4}  KIND  TYPE = VALUE")
        for v in info["variables"]:
            kind = "const" if v["constant"] else "var"
            value = v["int"] if v["int"] is not None else "0x" + v["value"]
            if v["value_truncated"]:
                value = f"{value}... ({v['size']} bytes)"
            out.append(
                f"  {v['name']:<24} {v['section']:<16} {v['offset']:>6} {v['size']:>4}"
                f"  {kind:<5} {v['type']} = {value}"
            )
    return "\n".join(out)
