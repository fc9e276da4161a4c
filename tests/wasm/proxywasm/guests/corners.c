/* Hostile and corner-case behaviour, picked per request by its `x-do` header:
 *   loop  - spin forever in proxy_on_request_headers (the callback deadline must stop it);
 *   bomb  - allocate 1 MiB blocks until malloc fails, then trap (the memory cap must hold);
 *   exit  - call exit(3), which is WASI proc_exit;
 *   print - printf a line (WASI fd_write, which the host logs) and continue;
 *   body  - on the request body: prepend "<", append ">" (start past the end), then on the
 *           response body replace everything from offset 1 with "ody" (size past the end).
 * Without x-do it continues. */
#include "proxy_wasm.h"
#include <stdio.h>

static char mode[16];

EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t root) {}
EXPORT(proxy_on_vm_start) int on_vm_start(uint32_t root, size_t size) { return 1; }
EXPORT(proxy_on_configure) int on_configure(uint32_t root, size_t size) { return 1; }

EXPORT(proxy_on_request_headers) int on_request_headers(uint32_t id, size_t count, int end) {
  char *value = 0; size_t n = 0;
  mode[0] = 0;
  if (proxy_get_header_map_value(REQUEST_HEADERS, LIT("x-do"), &value, &n) != OK) return CONTINUE;
  snprintf(mode, sizeof mode, "%.*s", (int)n, value);
  free(value);
  if (!strcmp(mode, "loop")) { volatile int spin = 1; while (spin) {} }
  if (!strcmp(mode, "bomb")) {
    size_t blocks = 0;
    while (malloc(1 << 20)) blocks++;
    char msg[64]; snprintf(msg, sizeof msg, "corners: malloc failed after %zu MiB", blocks);
    log_info(msg);
    __builtin_trap();
  }
  if (!strcmp(mode, "exit")) exit(3);
  if (!strcmp(mode, "print")) { printf("corners: hello from printf\n"); fflush(stdout); }
  if (!strcmp(mode, "body")) proxy_remove_header_map_value(REQUEST_HEADERS, LIT("content-length"));
  return CONTINUE;
}

EXPORT(proxy_on_request_body) int on_request_body(uint32_t id, size_t size, int end) {
  if (strcmp(mode, "body")) return CONTINUE;
  if (!end) return PAUSE;  /* buffer the whole body */
  proxy_set_buffer_bytes(REQUEST_BODY, 0, 0, LIT("<"));
  proxy_set_buffer_bytes(REQUEST_BODY, 0x7fffffff, 0, LIT(">"));
  return CONTINUE;
}

EXPORT(proxy_on_response_headers) int on_response_headers(uint32_t id, size_t count, int end) {
  if (!strcmp(mode, "body")) proxy_remove_header_map_value(RESPONSE_HEADERS, LIT("content-length"));
  return CONTINUE;
}

EXPORT(proxy_on_response_body) int on_response_body(uint32_t id, size_t size, int end) {
  if (strcmp(mode, "body")) return CONTINUE;
  if (!end) return PAUSE;
  char *data = 0; size_t n = 0;
  /* A read past the end is clamped; the first byte stays, the rest is replaced. */
  int status = proxy_get_buffer_bytes(RESPONSE_BODY, 0, size + 1000, &data, &n);
  if (status != OK || n != size) __builtin_trap();
  free(data);
  proxy_set_buffer_bytes(RESPONSE_BODY, 1, 0x7fffffff, LIT("ody"));
  return CONTINUE;
}
