/* The Proxy-Wasm ABI 0.2.1 host functions, declared for the C test guests (clang wasm32-wasi,
 * reactor model). Only what the guests here use; the spec is proxy-wasm/spec v0.2.1. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

enum { OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, INVALID_MEMORY_ACCESS = 6, EMPTY = 7,
       CAS_MISMATCH = 8, UNIMPLEMENTED = 12 };
enum { REQUEST_HEADERS = 0, REQUEST_TRAILERS = 1, RESPONSE_HEADERS = 2, RESPONSE_TRAILERS = 3,
       HTTP_CALL_RESPONSE_HEADERS = 6 };
enum { REQUEST_BODY = 0, RESPONSE_BODY = 1, HTTP_CALL_RESPONSE_BODY = 4, VM_CONFIGURATION = 6,
       PLUGIN_CONFIGURATION = 7 };
enum { CONTINUE = 0, PAUSE = 1 };

IMPORT(proxy_log) int proxy_log(int level, const char *msg, size_t size);
IMPORT(proxy_get_header_map_value) int proxy_get_header_map_value(
    int map, const char *key, size_t key_size, char **value, size_t *value_size);
IMPORT(proxy_add_header_map_value) int proxy_add_header_map_value(
    int map, const char *key, size_t key_size, const char *value, size_t value_size);
IMPORT(proxy_replace_header_map_value) int proxy_replace_header_map_value(
    int map, const char *key, size_t key_size, const char *value, size_t value_size);
IMPORT(proxy_remove_header_map_value) int proxy_remove_header_map_value(
    int map, const char *key, size_t key_size);
IMPORT(proxy_get_header_map_pairs) int proxy_get_header_map_pairs(int map, char **data, size_t *size);
IMPORT(proxy_set_header_map_pairs) int proxy_set_header_map_pairs(int map, const char *data, size_t size);
IMPORT(proxy_get_buffer_bytes) int proxy_get_buffer_bytes(
    int buffer, size_t start, size_t max_size, char **data, size_t *size);
IMPORT(proxy_set_buffer_bytes) int proxy_set_buffer_bytes(
    int buffer, size_t start, size_t size, const char *data, size_t data_size);
IMPORT(proxy_send_local_response) int proxy_send_local_response(
    uint32_t status, const char *details, size_t details_size, const char *body, size_t body_size,
    const char *headers, size_t headers_size, int32_t grpc_status);
IMPORT(proxy_get_property) int proxy_get_property(
    const char *path, size_t path_size, char **value, size_t *value_size);
IMPORT(proxy_set_property) int proxy_set_property(
    const char *path, size_t path_size, const char *value, size_t value_size);
IMPORT(proxy_continue_stream) int proxy_continue_stream(int stream_type);
IMPORT(proxy_set_tick_period_milliseconds) int proxy_set_tick_period_milliseconds(uint32_t ms);
IMPORT(proxy_set_effective_context) int proxy_set_effective_context(uint32_t context_id);
IMPORT(proxy_define_metric) int proxy_define_metric(int type, const char *name, size_t size, uint32_t *id);
IMPORT(proxy_increment_metric) int proxy_increment_metric(uint32_t id, int64_t delta);
IMPORT(proxy_get_shared_data) int proxy_get_shared_data(
    const char *key, size_t key_size, char **value, size_t *value_size, uint32_t *cas);
IMPORT(proxy_set_shared_data) int proxy_set_shared_data(
    const char *key, size_t key_size, const char *value, size_t value_size, uint32_t cas);
IMPORT(proxy_http_call) int proxy_http_call(
    const char *cluster, size_t cluster_size, const char *headers, size_t headers_size,
    const char *body, size_t body_size, const char *trailers, size_t trailers_size,
    uint32_t timeout_ms, uint32_t *call_id);
IMPORT(proxy_done) int proxy_done(void);

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

static inline void log_info(const char *msg) { proxy_log(2, msg, strlen(msg)); }
#define LIT(s) s, sizeof(s) - 1
