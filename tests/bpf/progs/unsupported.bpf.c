// Things remora must refuse clearly at load time (and still show in inspect).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
} __attribute__((preserve_access_index));

SEC("tp_btf/sys_enter")
int uses_core(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	return BPF_CORE_READ(t, pid);
}

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
