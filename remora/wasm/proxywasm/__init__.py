"""A Proxy-Wasm host (ABI 0.2.0 and 0.2.1) on remora.wasm's sandbox, limits and raw call path.

- `abi`: the ABI's numbers and its serialized header maps;
- `contexts`: root and stream contexts as plain data the proxy fills and reads back;
- `memory`: bounds-checked guest memory access and guest-side allocation;
- `hostcalls`: the `env.proxy_*` functions; `wasi`: the WASI subset filters import;
- `shared`: shared data and queues; `metrics`: filter-defined metrics;
- `vm`: one VM, its lifecycle, callbacks, deadlines and failure.

The proxy's side (the HTTP filter chain, Envoy's config) lives in remora/proxy/wasm/.
"""
