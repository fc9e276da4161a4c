/* Declares only the ABI 0.1.0 marker: the host must refuse it with a clear error. */
#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))
EXPORT(proxy_abi_version_0_1_0) void marker(void) {}
EXPORT(proxy_on_context_create) void on_context_create(int id, int root) {}
