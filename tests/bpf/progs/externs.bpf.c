// Externs of every kind: .kconfig values, kernel symbols typed and untyped, kfuncs, and weak
// ones the kernel lacks. Each program returns what one extern resolved to.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Defined, not only declared: libbpf (and remora) hold a kfunc's prototype against the
 * kernel's, and a forward declaration is not a struct. The members do not matter. */
struct task_struct {
	int pid;
};

extern int CONFIG_HZ __kconfig;
extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_BPF_JIT __kconfig;
extern char CONFIG_LOCALVERSION[16] __kconfig;
extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_REMORA_NEVER_SET __kconfig __weak;

extern const void __x64_sys_bpf __ksym;
extern const int bpf_prog_active __ksym;
extern struct task_struct *bpf_task_from_pid(int pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_remora_no_such_kfunc(void) __ksym __weak;

char _license[] SEC("license") = "GPL";

SEC("syscall") int hz(void *ctx) { return CONFIG_HZ + CONFIG_REMORA_NEVER_SET; }
SEC("syscall") int version(void *ctx) { return LINUX_KERNEL_VERSION; }
SEC("syscall") int bools(void *ctx) { return CONFIG_BPF_SYSCALL * 10 + CONFIG_BPF_JIT; }
SEC("syscall") int localversion(void *ctx) { return CONFIG_LOCALVERSION[1] + (CONFIG_LOCALVERSION[2] << 8); }
SEC("syscall") int addr_lo(void *ctx) { return (unsigned int)(unsigned long)&__x64_sys_bpf; }
SEC("syscall") int percpu(void *ctx) { int *p = bpf_this_cpu_ptr(&bpf_prog_active); return *p; }

SEC("syscall") int own_task(void *ctx)
{
	struct task_struct *t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);

	if (!t)
		return 0;
	bpf_task_release(t);
	return 1;
}

SEC("syscall") int guarded_kfunc(void *ctx)
{
	if (!!bpf_remora_no_such_kfunc) {
		bpf_remora_no_such_kfunc();
		return 1;
	}
	return 2;
}

SEC("socket") int plain(void *ctx) { return 7; }
