// Things remora must refuse clearly at load time (and still show in inspect).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// (A CO-RE program used to be here; CO-RE relocations are applied now: see core.bpf.c.)

SEC("weird_section")
int unknown_kind(void *ctx)
{
	return 0;
}

SEC("freplace/xdp_dispatcher")
int needs_target(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
