#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct legacy_def { unsigned int type, key_size, value_size, max_entries, map_flags; };
struct h32 {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
};

struct h32 btf_weak_here SEC(".maps");
__weak struct h32 btf_strong_here SEC(".maps");
__weak struct legacy_def legacy_strong_here SEC("maps") = { BPF_MAP_TYPE_HASH, 4, 4, 21, 0 };
struct legacy_def legacy_weak_here SEC("maps") = { BPF_MAP_TYPE_HASH, 4, 4, 22, 0 };

__noinline int which(void) { return 2; }

__noinline int defined_in_two(void)
{
	__u32 k = 0;

	return bpf_map_lookup_elem(&legacy_weak_here, &k) ? 5 : 4;
}
