// `values` initialisers on a hash map: only prog arrays and maps of maps take them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket") int target(void *ctx) { return 0; }

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} table SEC(".maps") = {
	.values = { [1] = &target },
};
