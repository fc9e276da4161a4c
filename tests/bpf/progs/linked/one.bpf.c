// Linked with two.bpf.c by `bpftool gen object`: weak and strong definitions of maps (BTF
// and legacy) and functions on both sides, and a call across objects.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct legacy_def { unsigned int type, key_size, value_size, max_entries, map_flags; };
struct h32 {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
};

__weak struct h32 btf_weak_here SEC(".maps");
struct h32 btf_strong_here SEC(".maps");
struct legacy_def legacy_strong_here SEC("maps") = { BPF_MAP_TYPE_HASH, 4, 4, 11, 0 };
__weak struct legacy_def legacy_weak_here SEC("maps") = { BPF_MAP_TYPE_HASH, 4, 4, 12, 0 };

extern int defined_in_two(void);
__weak __noinline int which(void) { return 1; }

SEC("socket") int calls_two(void *ctx) { return defined_in_two(); }
SEC("socket") int calls_which(void *ctx) { return which(); }

char _license[] SEC("license") = "GPL";
