// CO-RE relocations that cannot be satisfied, next to a program that loads.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct out {
	unsigned long long v[16];
};

struct task_struct {
	int tgid;
	int remora_no_such_field;
	long long pid; // the kernel's is a 4-byte pid_t: a signed field cannot change width
} __attribute__((preserve_access_index));

typedef struct {
	int x;
} __attribute__((preserve_access_index)) anon_t;

// Reads a field the kernel lacks, unguarded: the poisoned load is reachable.
SEC("syscall")
int reads_missing(struct out *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task_btf();

	ctx->v[0] = t->remora_no_such_field;
	return 0;
}

// A signed field of another width: poisoned, as libbpf does, so the verifier refuses it.
SEC("syscall")
int wrong_width(struct out *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task_btf();

	ctx->v[0] = t->pid;
	return 0;
}

// The kernel has no typedef anon_t: poisoned (reachable, so refused by the verifier).
SEC("syscall")
int no_typedef(struct out *ctx)
{
	ctx->v[0] = bpf_core_field_offset(((anon_t *)0)->x);
	return 0;
}

SEC("syscall")
int fine(struct out *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task_btf();

	ctx->v[0] = t->tgid;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
