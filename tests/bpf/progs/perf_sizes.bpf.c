// A perf event array that leaves its sizes to the loader, as libbpf allows.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
} events SEC(".maps");

char _license[] SEC("license") = "GPL";

SEC("socket") int plain(void *ctx) { return 1; }
