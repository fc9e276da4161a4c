// Ring-buffer producers run by BPF_PROG_TEST_RUN (no attach): the reader tests and the benchmark.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_PAYLOAD 256

struct event {
	__u64 seq;
	__u32 len;
	__u32 tag;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 16384);
} user_events SEC(".maps");

/* The context of `produce` and `output`: what to write, and what happened. */
struct produce_args {
	__u32 count;
	__u32 discard_every; /* produce: discard every n-th record (0: never) */
	__u64 seq;           /* first sequence number */
	__u32 flags;         /* BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP */
	__u32 min_size;      /* output: record i is min_size + i % span bytes, 8..255 */
	__u32 span;
	__u32 ok;            /* out: records written (submitted or output) */
	__u32 failed;        /* out: reservations or outputs that failed */
	__s32 last_err;      /* out: the last output error */
	struct event last;   /* out: the last record submitted (and BTF for struct event) */
	__u8 payload[MAX_PAYLOAD];
};

struct loop_state {
	struct produce_args a;
	__u32 i;
};

static long reserve_one(__u32 i, void *data)
{
	struct loop_state *s = data;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		s->a.failed++;
		return 0;
	}
	e->seq = s->a.seq + i;
	e->len = sizeof(*e);
	e->tag = 0xe7e7;
	if (s->a.discard_every && (i % s->a.discard_every) == s->a.discard_every - 1) {
		bpf_ringbuf_discard(e, s->a.flags);
		return 0;
	}
	s->a.last = *e;
	bpf_ringbuf_submit(e, s->a.flags);
	s->a.ok++;
	return 0;
}

SEC("syscall")
int produce(struct produce_args *ctx)
{
	struct loop_state s = {};

	s.a.count = ctx->count;
	s.a.discard_every = ctx->discard_every;
	s.a.seq = ctx->seq;
	s.a.flags = ctx->flags;
	bpf_loop(s.a.count, reserve_one, &s, 0);
	ctx->ok = s.a.ok;
	ctx->failed = s.a.failed;
	ctx->last = s.a.last;
	return 0;
}

static long output_one(__u32 i, void *data)
{
	struct loop_state *s = data;
	/* the mask (not a range check, which clang folds away) bounds the stack read */
	__u64 size = (s->a.min_size + (s->a.span ? i % s->a.span : 0)) & (MAX_PAYLOAD - 1);
	long err;

	if (size < 8)
		return 1;
	*(__u64 *)s->a.payload = s->a.seq + i;
	err = bpf_ringbuf_output(&events, s->a.payload, size, s->a.flags);
	if (err) {
		s->a.failed++;
		s->a.last_err = err;
	} else {
		s->a.ok++;
	}
	return 0;
}

SEC("syscall")
int output(struct produce_args *ctx)
{
	struct loop_state s = {};

	s.a.count = ctx->count;
	s.a.seq = ctx->seq;
	s.a.flags = ctx->flags;
	s.a.min_size = ctx->min_size;
	s.a.span = ctx->span;
	__builtin_memcpy(s.a.payload, ctx->payload, MAX_PAYLOAD);
	bpf_loop(s.a.count, output_one, &s, 0);
	ctx->ok = s.a.ok;
	ctx->failed = s.a.failed;
	ctx->last_err = s.a.last_err;
	return 0;
}

/* The context of `drain`: totals over the records the kernel took from the user ring. */
struct drain_args {
	__u64 sum;     /* of each record's first 8 bytes */
	__u32 records; /* callbacks run */
	__u32 short_records;
	__s64 ret;     /* what bpf_user_ringbuf_drain returned */
};

static long drain_one(struct bpf_dynptr *dynptr, void *data)
{
	struct drain_args *d = data;
	__u64 v;

	d->records++;
	if (bpf_dynptr_read(&v, sizeof(v), dynptr, 0, 0)) {
		d->short_records++;
		return 0;
	}
	d->sum += v;
	return 0;
}

SEC("syscall")
int drain(struct drain_args *ctx)
{
	struct drain_args d = {};

	d.ret = bpf_user_ringbuf_drain(&user_events, drain_one, &d, 0);
	ctx->sum = d.sum;
	ctx->records = d.records;
	ctx->short_records = d.short_records;
	ctx->ret = d.ret;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
