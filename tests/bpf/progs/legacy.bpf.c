// A legacy `maps` section (struct bpf_map_def), which libbpf 1.x refuses and we still load.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 16,
};

struct bpf_map_def SEC("maps") legacy_array = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 2,
};

SEC("xdp")
int legacy_prog(struct xdp_md *ctx)
{
	__u32 k = 1;
	__u64 one = 1, *v;
	__u32 *a;

	v = bpf_map_lookup_elem(&legacy_hash, &k);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&legacy_hash, &k, &one, BPF_ANY);
	a = bpf_map_lookup_elem(&legacy_array, &k);
	return a ? *a : 0;
}

char _license[] SEC("license") = "GPL";
__u32 _version SEC("version") = 0x060000;
