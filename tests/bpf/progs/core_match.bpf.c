// TYPE_MATCHES relocations. clang 14 cannot emit them (BPF_TYPE_MATCHES needs clang 15), so
// this object asks bpf_core_type_exists() and the test rewrites those relocations' kind from
// TYPE_EXISTS (8) to TYPE_MATCHES (12) in .BTF.ext, for remora and bpftool alike.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef int pid_t;

struct out {
	unsigned long long v[16];
};

// The kernel's pid and tgid are pid_t (int): matches.
struct task_struct___same {
	pid_t pid;
	int tgid;
};

// A long is not the kernel's int: exists, but does not match.
struct task_struct___wider {
	long pid;
};

// A member the kernel's struct lacks: exists, but does not match.
struct task_struct___extra {
	int remora_no_such_field;
};

// Enumerators by name, any values: matches.
enum pid_type___same {
	PIDTYPE_PID___x = 7,
	PIDTYPE_SID___x = 8,
};

// An enumerator the kernel lacks: does not match.
enum pid_type___extra {
	PIDTYPE_REMORA = 1,
};

// Behind a pointer a struct matches by name only.
struct task_struct___viaptr {
	struct task_struct___viaptr *real_parent;
};

SEC("syscall")
int core_match(struct out *ctx)
{
	ctx->v[0] = bpf_core_type_exists(struct task_struct___same);
	ctx->v[1] = bpf_core_type_exists(struct task_struct___wider);
	ctx->v[2] = bpf_core_type_exists(struct task_struct___extra);
	ctx->v[3] = bpf_core_type_exists(enum pid_type___same);
	ctx->v[4] = bpf_core_type_exists(enum pid_type___extra);
	ctx->v[5] = bpf_core_type_exists(struct task_struct___viaptr);
	ctx->v[6] = bpf_core_type_exists(pid_t);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
