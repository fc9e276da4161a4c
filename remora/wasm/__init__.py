"""remora.wasm: the WebAssembly host layer (wasmtime, pinned).

- `engine`: one wasmtime Engine per configuration, plus the epoch ticker for deadlines;
- `cache`: the on-disk compiled-module cache and its trust model;
- `sandbox`: the WASI preview 1 policy (deny by default, bounded output capture);
- `limits`: memory/fuel/deadline/stack/table/instance limits and their typed errors;
- `runner`: `WasmHost` and `Guest`, which put the above together;
- `moduleinfo`: imports, exports and custom sections of a module;
- `abi`: dataclass structs <-> linear memory, typed host functions, C header/WIT emission;
- `fastcall`: the raw (unchecked) call path for hot Python<->Wasm crossings;
- `cli`: `remora wasm run | inspect`.

This file imports nothing so that `remora --help` does not load wasmtime.
"""
