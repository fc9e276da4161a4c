// CO-RE: local definitions that the loader relocates against the running kernel's BTF.
// Every program runs as SEC("syscall") through BPF_PROG_TEST_RUN and writes what its
// relocations resolved to into the context, slot by slot (struct out).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef int pid_t;

struct out {
	unsigned long long v[16];
};

// Deliberately not the kernel's layout: every offset below must come from vmlinux BTF.
struct task_struct {
	unsigned long long flags; // the kernel's is an unsigned int: the load must shrink to 4 bytes
	pid_t pid;
	pid_t tgid;
	char comm[16];
	int prio;
	unsigned int in_execve : 1;
	unsigned int init_private_fork_class : 4;
	int remora_no_such_field;
} __attribute__((preserve_access_index));

struct task_struct___parent {
	struct task_struct___parent *real_parent;
	int tgid;
} __attribute__((preserve_access_index));

// A flavour: the `___remora` suffix is dropped when matching kernel types.
struct task_struct___remora {
	int remora_missing;
	int tgid;
} __attribute__((preserve_access_index));

struct remora_no_such_type {
	int x;
};

enum pid_type {
	PIDTYPE_PID = 10,
	PIDTYPE_SID = 20,
	PIDTYPE_REMORA = 30,
};

enum pid_type___remora {
	PIDTYPE_TGID = 99,
	PIDTYPE_PGID___remora = 77, // enumerators take flavours too
};

// An ENUM64 in the kernel; clang 14 emits this local one as a 32-bit ENUM.
enum blake2b_iv {
	BLAKE2B_IV0 = 1,
};

#define FIELD_INFO(expr, kind) __builtin_preserve_field_info(expr, BPF_FIELD_##kind)

SEC("syscall")
int core_fields(struct out *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task_btf();

	ctx->v[0] = t->tgid;
	ctx->v[1] = t->pid;
	ctx->v[2] = bpf_core_field_offset(t->tgid);
	ctx->v[3] = bpf_core_field_size(t->comm);
	ctx->v[4] = bpf_core_field_exists(t->pid);
	ctx->v[5] = bpf_core_field_exists(t->remora_no_such_field);
	ctx->v[6] = FIELD_INFO(t->pid, SIGNED);
	ctx->v[7] = FIELD_INFO(t->flags, SIGNED);
	ctx->v[8] = t->flags;
	ctx->v[9] = FIELD_INFO(t->comm[2], BYTE_OFFSET);
	ctx->v[10] = t->prio;
	// Unresolvable, so poisoned, but unreachable: the verifier drops it as dead code.
	if (bpf_core_field_exists(t->remora_no_such_field))
		ctx->v[11] = t->remora_no_such_field;
	else
		ctx->v[11] = 7777;
	ctx->v[12] = t->comm[0];
	return 0;
}

SEC("syscall")
int core_bits(struct out *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task_btf();
	unsigned int off = FIELD_INFO(t->init_private_fork_class, BYTE_OFFSET);

	ctx->v[0] = BPF_CORE_READ_BITFIELD(t, init_private_fork_class);
	ctx->v[1] = off;
	ctx->v[2] = FIELD_INFO(t->init_private_fork_class, BYTE_SIZE);
	ctx->v[3] = FIELD_INFO(t->init_private_fork_class, LSHIFT_U64);
	ctx->v[4] = FIELD_INFO(t->init_private_fork_class, RSHIFT_U64);
	ctx->v[5] = *(unsigned int *)((void *)t + off);
	ctx->v[6] = BPF_CORE_READ_BITFIELD(t, in_execve);
	ctx->v[7] = FIELD_INFO(t->in_execve, BYTE_OFFSET);
	ctx->v[8] = FIELD_INFO(t->in_execve, LSHIFT_U64);
	ctx->v[9] = FIELD_INFO(t->in_execve, RSHIFT_U64);
	ctx->v[10] = FIELD_INFO(t->init_private_fork_class, SIGNED);
	return 0;
}

SEC("syscall")
int core_flavour(struct out *ctx)
{
	struct task_struct___remora *t = (void *)bpf_get_current_task_btf();

	ctx->v[0] = t->tgid;
	ctx->v[1] = bpf_core_field_exists(t->remora_missing);
	ctx->v[2] = bpf_core_field_exists(t->tgid);
	ctx->v[3] = bpf_core_field_offset(t->tgid);
	return 0;
}

SEC("syscall")
int core_types(struct out *ctx)
{
	ctx->v[0] = bpf_core_type_size(struct task_struct);
	ctx->v[1] = bpf_core_type_exists(struct task_struct);
	ctx->v[2] = bpf_core_type_exists(struct remora_no_such_type);
	ctx->v[3] = bpf_core_type_id_kernel(struct task_struct);
	ctx->v[4] = bpf_core_type_id_local(struct task_struct);
	ctx->v[5] = bpf_core_type_size(pid_t);
	ctx->v[6] = bpf_core_type_exists(struct task_struct___remora);
	ctx->v[7] = bpf_core_type_size(struct task_struct___remora);
	ctx->v[8] = bpf_core_type_size(struct remora_no_such_type);
	ctx->v[9] = bpf_core_type_id_kernel(pid_t);
	return 0;
}

SEC("syscall")
int core_enums(struct out *ctx)
{
	ctx->v[0] = bpf_core_enum_value(enum pid_type, PIDTYPE_SID);
	ctx->v[1] = bpf_core_enum_value_exists(enum pid_type, PIDTYPE_REMORA);
	ctx->v[2] = bpf_core_enum_value_exists(enum pid_type, PIDTYPE_SID);
	ctx->v[3] = bpf_core_enum_value(enum blake2b_iv, BLAKE2B_IV0);
	if (bpf_core_enum_value_exists(enum pid_type, PIDTYPE_REMORA))
		ctx->v[4] = bpf_core_enum_value(enum pid_type, PIDTYPE_REMORA);
	else
		ctx->v[4] = 5555;
	ctx->v[5] = bpf_core_enum_value(enum pid_type___remora, PIDTYPE_TGID);
	ctx->v[6] = bpf_core_enum_value_exists(enum blake2b_iv, BLAKE2B_IV0);
	ctx->v[7] = bpf_core_enum_value(enum pid_type___remora, PIDTYPE_PGID___remora);
	return 0;
}

// A subprogram with its own relocations, copied into both programs that call it.
static __noinline int read_tgid(struct task_struct *t)
{
	return t->tgid + bpf_core_field_offset(t->pid);
}

SEC("syscall")
int core_sub_a(struct out *ctx)
{
	ctx->v[0] = read_tgid((void *)bpf_get_current_task_btf());
	return 0;
}

SEC("syscall")
int core_sub_b(struct out *ctx)
{
	ctx->v[1] = bpf_core_field_offset(((struct task_struct *)0)->comm);
	ctx->v[0] = read_tgid((void *)bpf_get_current_task_btf());
	return 0;
}

// Reads through bpf_probe_read_kernel(), two levels deep: current->real_parent->tgid.
SEC("syscall")
int core_probe(struct out *ctx)
{
	struct task_struct___parent *t = (void *)bpf_get_current_task();

	ctx->v[0] = BPF_CORE_READ(t, real_parent, tgid);
	ctx->v[1] = BPF_CORE_READ(t, tgid);
	return 0;
}

// The same on a BTF tracepoint (loaded, not run: nothing can test-run tp_btf).
SEC("tp_btf/sys_enter")
int core_tp_btf(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	return BPF_CORE_READ(t, pid);
}

char LICENSE[] SEC("license") = "GPL";
