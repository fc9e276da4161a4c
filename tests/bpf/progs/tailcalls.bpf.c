// Prog arrays and maps-in-maps initialised from BTF `values = {...}`.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [1] = &inner_b },
};

int tail_target(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int(void *));
} jump SEC(".maps") = {
	.values = { [0] = (void *)&tail_target },
};

SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
	return 3;
}

SEC("xdp")
int tail_entry(struct xdp_md *ctx)
{
	__u32 k = 1, zero = 0, *v;
	void *m = bpf_map_lookup_elem(&outer, &k);
	if (m) {
		v = bpf_map_lookup_elem(m, &zero);
		if (v)
			*v += 1;
	}
	bpf_tail_call(ctx, &jump, 0);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
