// TCP telemetry: one event per TCP connection when it closes, with its smoothed RTT,
// retransmits, bytes each way and lifetime. A sockops program on a cgroup sees every TCP
// socket of the processes in it; it asks the kernel for state-change callbacks when a
// connection is established, and reports at the change to CLOSE.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TCP_CLOSE 7
#define AF_INET 2
#define AF_INET6 10
#define WAKEUP_BYTES (64 * 1024)	/* about 700 events */

struct tcp_event {
	__u64 cookie;
	__u64 lifetime_ns;
	__u64 bytes_acked;	/* sent and acknowledged, in sequence space: SYN and FIN may add one each */
	__u64 bytes_received;	/* likewise */
	__u32 srtt_us;
	__u32 total_retrans;
	__u32 local_ip4;	/* network byte order */
	__u32 remote_ip4;
	__u32 local_ip6[4];
	__u32 remote_ip6[4];
	__u16 local_port;	/* host byte order */
	__u16 remote_port;	/* host byte order */
	__u16 family;
	__u8 passive;		/* 1: accepted by a listener here; 0: connected from here */
	__u8 pad;
};

/* clang puts a type in BTF only when something global uses it; the reader checks against it */
struct tcp_event *unused_tcp_event __attribute__((unused));

struct start {
	__u64 ns;
	__u8 passive;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);	/* socket cookie */
	__type(value, struct start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");	/* events lost to a full ring buffer */

static void established(struct bpf_sock_ops *skops, __u8 passive)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct start s = { .ns = bpf_ktime_get_ns(), .passive = passive };

	bpf_map_update_elem(&starts, &cookie, &s, BPF_ANY);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

static void closed(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct start *s = bpf_map_lookup_elem(&starts, &cookie);
	struct tcp_event *e;
	__u32 zero = 0;

	if (!s)
		return;	/* established before the program was attached */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u64 *n = bpf_map_lookup_elem(&dropped, &zero);

		if (n)
			__sync_fetch_and_add(n, 1);
		bpf_map_delete_elem(&starts, &cookie);
		return;
	}
	e->cookie = cookie;
	e->lifetime_ns = bpf_ktime_get_ns() - s->ns;
	e->passive = s->passive;
	e->bytes_acked = skops->bytes_acked;
	e->bytes_received = skops->bytes_received;
	e->srtt_us = skops->srtt_us >> 3;	/* the kernel keeps it scaled by 8 */
	e->total_retrans = skops->total_retrans;
	e->family = skops->family;
	e->local_port = skops->local_port;
	e->remote_port = bpf_ntohl(skops->remote_port);	/* the kernel gives dport << 16, big-endian */
	e->local_ip4 = skops->local_ip4;
	e->remote_ip4 = skops->remote_ip4;
	e->local_ip6[0] = skops->local_ip6[0];
	e->local_ip6[1] = skops->local_ip6[1];
	e->local_ip6[2] = skops->local_ip6[2];
	e->local_ip6[3] = skops->local_ip6[3];
	e->remote_ip6[0] = skops->remote_ip6[0];
	e->remote_ip6[1] = skops->remote_ip6[1];
	e->remote_ip6[2] = skops->remote_ip6[2];
	e->remote_ip6[3] = skops->remote_ip6[3];
	e->pad = 0;
	/* Wake the reader only once a batch has piled up: a wakeup per connection would cost the
	 * proxy a loop iteration per connection. The reader also drains on a timer, so a quiet
	 * moment never strands an event for longer than that. */
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES)
		bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	else
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	bpf_map_delete_elem(&starts, &cookie);
}

SEC("sockops")
int tcp_telemetry(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		established(skops, 0);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		established(skops, 1);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == TCP_CLOSE)
			closed(skops);
		break;
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
