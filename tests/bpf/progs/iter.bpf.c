// An iterator over a map's elements, printing "key=value" lines.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} table SEC(".maps");

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__bpf_map_elem {
	union { struct bpf_iter_meta *meta; __u64 :64; };
	union { struct bpf_map *map; __u64 :64; };
	union { void *key; __u64 :64; };
	union { void *value; __u64 :64; };
};

SEC("iter/bpf_map_elem")
int dump_table(struct bpf_iter__bpf_map_elem *ctx)
{
	static const char fmt[] = "%u=%u\n";
	__u32 *key = ctx->key, *value = ctx->value;
	__u64 args[2];

	if (!key || !value)
		return 0;
	args[0] = *key;
	args[1] = *value;
	bpf_seq_printf(ctx->meta->seq, fmt, sizeof(fmt), args, sizeof(args));
	return 0;
}

char _license[] SEC("license") = "GPL";
