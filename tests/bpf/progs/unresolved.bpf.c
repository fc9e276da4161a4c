// One object, five programs: one calls a function no object here defines, one needs a config
// value no kernel has, one a kfunc no kernel has, one declares a kfunc with a prototype that
// contradicts the kernel's, and one needs nothing. Only the last may load.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int defined_elsewhere(void);
extern int CONFIG_REMORA_NEVER_SET __kconfig;
extern void bpf_remora_no_such_kfunc(void) __ksym;
/* The kernel's takes one struct cgroup pointer: this declaration contradicts it. */
extern void bpf_cgroup_release(long a, long b) __ksym;

char _license[] SEC("license") = "GPL";

SEC("socket") int calls_elsewhere(void *ctx) { return defined_elsewhere(); }
SEC("socket") int needs_config(void *ctx) { return CONFIG_REMORA_NEVER_SET; }
SEC("syscall") int needs_kfunc(void *ctx) { bpf_remora_no_such_kfunc(); return 0; }
SEC("syscall") int wrong_prototype(void *ctx) { bpf_cgroup_release(1, 2); return 0; }
SEC("socket") int fine(void *ctx) { return 3; }
