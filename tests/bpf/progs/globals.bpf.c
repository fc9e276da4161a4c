// Maps, global data, subprograms and several programs per section: the loader's main fixture.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct flow_key {
	__u32 saddr;
	__u16 port;
	__u16 proto;
};

struct flow_val {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

volatile const __u32 verdict = 2;         /* .rodata: set before load */
volatile const __u64 magic = 0x1122334455667788ULL;
__u64 hits = 7;                           /* .data */
__u64 zeroed;                             /* .bss */
__u32 custom_data SEC(".data.custom") = 5;
const volatile __u32 custom_ro SEC(".rodata.custom") = 9;

static __noinline __u64 add_twice(__u64 a, __u64 b)
{
	return a + b + b;
}

static __noinline int bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (!v)
		return 0;
	__sync_fetch_and_add(v, add_twice(1, 2));
	return 1;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct flow_key k = {};
	struct flow_val init = {1, 0}, *v;

	if (data + 4 > end)
		return 1;
	k.saddr = *(__u32 *)data;
	k.port = 80;
	k.proto = 6;
	v = bpf_map_lookup_elem(&flows, &k);
	if (v) {
		v->packets++;
		v->bytes += end - data;
	} else {
		init.bytes = end - data;
		bpf_map_update_elem(&flows, &k, &init, BPF_ANY);
	}
	bump(0);
	hits++;
	zeroed += 2;
	custom_data += custom_ro;
	return verdict;
}

SEC("xdp")
int xdp_magic(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *p = bpf_map_lookup_elem(&percpu, &k);
	if (p)
		*p += 1;
	bump(1);
	return magic == 0x1122334455667788ULL ? 2 : 1;
}

SEC("socket")
int sock_all(struct __sk_buff *skb)
{
	return bump(2) ? skb->len : 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
