// A legacy map defined static, next to a global one.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct legacy_def { unsigned int type, key_size, value_size, max_entries, map_flags; };

struct legacy_def visible SEC("maps") = { BPF_MAP_TYPE_HASH, 4, 8, 1, 0 };
static struct legacy_def hidden SEC("maps") = { BPF_MAP_TYPE_HASH, 4, 8, 1, 0 };

SEC("xdp") int prog(void *ctx) { __u32 k = 0; return !!bpf_map_lookup_elem(&hidden, &k); }
