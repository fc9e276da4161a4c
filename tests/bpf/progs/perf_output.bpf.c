// A perf event array producer run by BPF_PROG_TEST_RUN: one sample per run, on the current CPU.
// (Syscall programs are sleepable and may not use perf event arrays, so this is an XDP program.)
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_SAMPLE 256

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
} events SEC(".maps");

struct sample {
	__u64 seq;
	__u32 cpu;
	__u32 size;
};

/* Sample i is min_size + i % span bytes (16..255): set before load. */
const volatile __u32 min_size = 16;
const volatile __u32 span = 0;

__u64 seq;        /* samples attempted */
__u64 ok;
__u64 failed;
__s64 last_err;
struct sample last; /* the last sample sent (and BTF for struct sample) */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[MAX_SAMPLE]);
} scratch SEC(".maps");

SEC("xdp")
int emit(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u8 *buf = bpf_map_lookup_elem(&scratch, &zero);
	struct sample *s;
	__u64 n = __sync_fetch_and_add(&seq, 1);
	/* the mask (not a range check, which clang folds away) bounds the read of buf */
	__u64 size = (min_size + (span ? n % span : 0)) & (MAX_SAMPLE - 1);
	long err;

	if (!buf || size < sizeof(*s))
		return XDP_ABORTED;
	s = (struct sample *)buf;
	s->seq = n;
	s->cpu = bpf_get_smp_processor_id();
	s->size = size;
	err = bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, buf, size);
	if (err) {
		__sync_fetch_and_add(&failed, 1);
		last_err = err;
		return XDP_DROP;
	}
	__sync_fetch_and_add(&ok, 1);
	last = *s;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
