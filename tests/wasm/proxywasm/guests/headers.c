/* Header and property corners: reads :path and a property into response headers, replaces,
 * removes and adds request headers, and records what the host answered for missing things. */
#include "proxy_wasm.h"
#include <stdio.h>

static char seen_path[256];
static char statuses[128];

EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t root) {}
EXPORT(proxy_on_vm_start) int on_vm_start(uint32_t root, size_t size) { log_info("headers: vm start"); return 1; }
EXPORT(proxy_on_configure) int on_configure(uint32_t root, size_t size) {
  char *data = 0; size_t n = 0;
  int status = proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size + 100, &data, &n);
  char msg[200];
  snprintf(msg, sizeof msg, "headers: configure status=%d size=%zu got=%.*s", status, size, (int)n, data ? data : "");
  log_info(msg);
  free(data);
  return 1;
}

EXPORT(proxy_on_request_headers) int on_request_headers(uint32_t id, size_t count, int end) {
  char *value = 0; size_t n = 0;
  if (proxy_get_header_map_value(REQUEST_HEADERS, LIT(":path"), &value, &n) == OK) {
    snprintf(seen_path, sizeof seen_path, "%.*s", (int)n, value);
    free(value);
  }
  int missing = proxy_get_header_map_value(REQUEST_HEADERS, LIT("x-not-there"), &value, &n);
  int removed = proxy_remove_header_map_value(REQUEST_HEADERS, LIT("x-remove-me"));
  int removed_missing = proxy_remove_header_map_value(REQUEST_HEADERS, LIT("x-never-there"));
  int replaced = proxy_replace_header_map_value(REQUEST_HEADERS, LIT("x-replace-me"), LIT("replaced"));
  int replaced_missing = proxy_replace_header_map_value(REQUEST_HEADERS, LIT("x-added-by-replace"), LIT("yes"));
  proxy_add_header_map_value(REQUEST_HEADERS, LIT("x-c-filter"), LIT("request"));
  int bad_map = proxy_add_header_map_value(99, LIT("a"), LIT("b"));
  int bad_ptr = proxy_add_header_map_value(REQUEST_HEADERS, (const char *)0x7fffff00, 1000000, LIT("b"));
  snprintf(statuses, sizeof statuses, "missing=%d removed=%d removed_missing=%d replaced=%d replaced_missing=%d bad_map=%d bad_ptr=%d",
           missing, removed, removed_missing, replaced, replaced_missing, bad_map, bad_ptr);
  return CONTINUE;
}

EXPORT(proxy_on_response_headers) int on_response_headers(uint32_t id, size_t count, int end) {
  proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x-seen-path"), seen_path, strlen(seen_path));
  proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x-statuses"), statuses, strlen(statuses));
  /* Field splitting attempts: refused with BAD_ARGUMENT, and nothing reaches the wire. */
  int crlf = proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x-evil"), LIT("a\r\nx-injected: 1"));
  int bad_name = proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x bad"), LIT("v"));
  int bad_status = proxy_replace_header_map_value(RESPONSE_HEADERS, LIT(":status"), LIT("200 OK"));
  char refused[64];
  snprintf(refused, sizeof refused, "crlf=%d bad_name=%d bad_status=%d", crlf, bad_name, bad_status);
  proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x-refused"), refused, strlen(refused));
  char *value = 0; size_t n = 0;
  int status = proxy_get_property(LIT("plugin_name"), &value, &n);
  if (status == OK) { proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x-plugin-name"), value, n); free(value); }
  status = proxy_get_property(LIT("no\0such"), &value, &n);
  char code[8]; snprintf(code, sizeof code, "%d", status);
  proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x-missing-property"), code, strlen(code));
  if (proxy_get_property(LIT("request\0path"), &value, &n) == OK) {
    proxy_add_header_map_value(RESPONSE_HEADERS, LIT("x-request-path"), value, n); free(value);
  }
  return CONTINUE;
}
