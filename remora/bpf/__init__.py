"""remora.bpf: a pure-Python eBPF loader over bpf(2) (see docs/bpf.md).

Entry points: `remora.bpf.collection.Collection` (load an object), `remora.bpf.maps.Map`,
`remora.bpf.prog.Program`, `remora.bpf.elf.read_elf` (inspect without a kernel). This package
module imports nothing, so `remora --help` does not pay for the loader.
"""
