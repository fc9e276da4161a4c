// A legacy map record longer than the fields loaders know, with a non-zero byte in the
// unknown part (an option that would be silently dropped).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct long_def {
	unsigned int type, key_size, value_size, max_entries, map_flags, inner_map_idx, numa_node;
	unsigned int future_option;
};

struct long_def m SEC("maps") = { BPF_MAP_TYPE_HASH, 4, 8, 1, 0, 0, 0, 1 };

SEC("xdp") int prog(void *ctx) { __u32 k = 0; return !!bpf_map_lookup_elem(&m, &k); }
