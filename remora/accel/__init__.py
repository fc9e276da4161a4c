"""The mesh's own eBPF programs: their C sources, their build, and what loads and reads them.

The sources live in `remora/accel/bpf/`, and `make accel` builds them with clang
(`remora.accel.build`). remora's own loader, `remora.bpf`, loads them, never libbpf.
"""
