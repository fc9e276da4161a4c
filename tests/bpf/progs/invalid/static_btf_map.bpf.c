// A BTF map defined static: nothing outside the object can name it (libbpf refuses it).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} hidden SEC(".maps");

SEC("xdp") int prog(void *ctx) { __u32 k = 0; return !!bpf_map_lookup_elem(&hidden, &k); }
