// A libbpf-bootstrap-style tracer: a tracepoint writes one event per getppid() call of the
// target process to a ring buffer and to a perf event array.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u32 pid;
	__u32 seq;
	char comm[16];
	__u64 cookie;
};

/* clang puts a type in BTF only when something global uses it; this makes `--type event` work */
struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} samples SEC(".maps");

const volatile __u32 target_tgid = 0;
__u32 seq = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct event *e;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (tgid != target_tgid)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = tgid;
	e->seq = seq++; /* one tracing process: no race worth an atomic here */
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->cookie = 0xfeedULL;
	bpf_perf_event_output(ctx, &samples, BPF_F_CURRENT_CPU, e, sizeof(*e));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("xdp")
int not_traced(struct xdp_md *ctx) { return XDP_PASS; }

char _license[] SEC("license") = "GPL";
