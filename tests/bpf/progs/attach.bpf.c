// One program per kind of attachment. Each counts what it sees into `hits`, at its own index,
// and only for the process named by `target_tgid` (set as a constant at load).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { TRACEPOINT, RAW_TP, TP_BTF, UPROBE, URETPROBE, SOCK_CREATE, XDP, TCX, SK_MSG, SK_LOOKUP, SLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

const volatile __u32 target_tgid = 0;
const volatile __u32 target_port_host = 0; /* sk_lookup's local_port is in host order */

static void hit(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&hits, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static int mine(void) { return (bpf_get_current_pid_tgid() >> 32) == target_tgid; }

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_tracepoint(void *ctx)
{
	if (mine())
		hit(TRACEPOINT);
	return 0;
}

SEC("raw_tp/sys_enter")
int on_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine() && ctx->args[1] == 110) /* __NR_getppid on x86_64 */
		hit(RAW_TP);
	return 0;
}

SEC("tp_btf/sys_enter")
int on_tp_btf(__u64 *ctx)
{
	if (mine() && ctx[1] == 110)
		hit(TP_BTF);
	return 0;
}

SEC("uprobe/libc.so.6:getppid")
int on_uprobe(void *ctx)
{
	if (mine())
		hit(UPROBE);
	return 0;
}

SEC("uretprobe/libc.so.6:getppid")
int on_uretprobe(void *ctx)
{
	if (mine())
		hit(URETPROBE);
	return 0;
}

SEC("cgroup/sock_create")
int on_sock_create(struct bpf_sock *sk)
{
	hit(SOCK_CREATE);
	return 1; /* allow */
}

SEC("cgroup/sock_create")
int deny_sock_create(struct bpf_sock *sk)
{
	return 0; /* refuse: socket() fails with EPERM */
}

SEC("xdp")
int on_xdp(struct xdp_md *ctx)
{
	hit(XDP);
	return XDP_PASS;
}

SEC("tcx/ingress")
int on_tcx(struct __sk_buff *skb)
{
	hit(TCX);
	return -1; /* TCX_NEXT */
}

SEC("sk_msg")
int on_sk_msg(struct sk_msg_md *msg)
{
	hit(SK_MSG);
	return SK_PASS;
}

SEC("sk_lookup")
int on_sk_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->local_port == target_port_host)
		hit(SK_LOOKUP);
	return SK_PASS; /* no steering: the usual socket lookup goes on */
}

SEC("socket")
int keep_nothing(struct __sk_buff *skb)
{
	return 0; /* a socket filter that truncates every packet to nothing: drop */
}

char _license[] SEC("license") = "GPL";
