/* Logs why, then refuses its configuration when it is "refuse" (proxy_on_configure -> false). */
#include "proxy_wasm.h"

EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t root) {}
EXPORT(proxy_on_vm_start) int on_vm_start(uint32_t root, size_t size) { return 1; }
EXPORT(proxy_on_configure) int on_configure(uint32_t root, size_t size) {
  char *data = 0; size_t n = 0;
  proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &data, &n);
  if (n == 6 && !memcmp(data, "refuse", 6)) { log_info("refuses: bad configuration"); return 0; }
  return 1;
}
