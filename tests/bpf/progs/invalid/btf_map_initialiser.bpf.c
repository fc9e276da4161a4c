// A BTF map definition that carries data: the loader reads definitions from BTF alone, so
// the non-zero byte would be ignored without a word.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} hash SEC(".maps") = {
	.key = (void *)1,
};
