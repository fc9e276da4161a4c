// The floor for consuming BPF ring-buffer and perf-buffer records: libbpf's ring_buffer__consume
// and perf_buffer__consume over the same producer programs the Python benchmark runs.
// Usage: ringbuf_floor RINGBUF_OBJ PERF_OBJ N_RING N_PERF ROUNDS -> JSON with events/s per round.
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* struct produce_args in tests/bpf/progs/ringbuf.bpf.c */
struct produce_args {
	__u32 count, discard_every;
	__u64 seq;
	__u32 flags, min_size, span, ok, failed;
	__s32 last_err;
	__u64 last[2];
	__u8 payload[256];
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int on_record(void *ctx, void *data, size_t size)
{
	++*(long *)ctx;
	return 0;
}

static void on_sample(void *ctx, int cpu, void *data, __u32 size)
{
	++*(long *)ctx;
}

static __u32 pow2_at_least(__u64 n)
{
	__u32 p = 4096;
	while (p < n)
		p <<= 1;
	return p;
}

static int ring(const char *path, long n, int rounds)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		return -1;
	bpf_map__set_max_entries(bpf_object__find_map_by_name(obj, "events"),
				 pow2_at_least((__u64)n * 24 + 4096));
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load %s failed\n", path);
		return -1;
	}
	int prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "produce"));
	int map = bpf_map__fd(bpf_object__find_map_by_name(obj, "events"));
	long seen = 0;
	struct ring_buffer *rb = ring_buffer__new(map, on_record, &seen, NULL);
	printf("\"ringbuf\": [");
	for (int r = 0; r < rounds; r++) {
		struct produce_args a = {.count = n, .flags = BPF_RB_NO_WAKEUP};
		LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = &a, .ctx_size_in = sizeof(a));
		if (bpf_prog_test_run_opts(prog, &o)) {
			perror("test_run produce");
			return -1;
		}
		seen = 0;
		double t0 = now();
		int got = ring_buffer__consume(rb);
		double dt = now() - t0;
		if (got != n || seen != n) {
			fprintf(stderr, "ringbuf: consumed %d (%ld), wanted %ld\n", got, seen, n);
			return -1;
		}
		printf("%s%.0f", r ? ", " : "", n / dt);
	}
	printf("]");
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}

static int perf(const char *path, long n, int rounds)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		return -1;
	/* this libbpf leaves a perf event array's sizes at 0, which the kernel refuses */
	struct bpf_map *events = bpf_object__find_map_by_name(obj, "events");
	bpf_map__set_key_size(events, 4);
	bpf_map__set_value_size(events, 4);
	bpf_map__set_max_entries(events, libbpf_num_possible_cpus());
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load %s failed\n", path);
		return -1;
	}
	int prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "emit"));
	int map = bpf_map__fd(bpf_object__find_map_by_name(obj, "events"));
	long seen = 0;
	/* 16-byte samples make 32-byte records */
	struct perf_buffer *pb = perf_buffer__new(map, pow2_at_least(n * 32 + 4096) / 4096,
						  on_sample, NULL, &seen, NULL);
	if (!pb) {
		perror("perf_buffer__new");
		return -1;
	}
	char pkt[64] = {0};
	printf("\"perf\": [");
	for (int r = 0; r < rounds; r++) {
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = sizeof(pkt),
			    .repeat = n);
		if (bpf_prog_test_run_opts(prog, &o)) {
			perror("test_run emit");
			return -1;
		}
		seen = 0;
		double t0 = now();
		perf_buffer__consume(pb);
		double dt = now() - t0;
		if (seen != n) {
			fprintf(stderr, "perf: consumed %ld, wanted %ld\n", seen, n);
			return -1;
		}
		printf("%s%.0f", r ? ", " : "", n / dt);
	}
	printf("]");
	perf_buffer__free(pb);
	bpf_object__close(obj);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: %s RINGBUF_OBJ PERF_OBJ N_RING N_PERF ROUNDS\n", argv[0]);
		return 2;
	}
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	sched_setaffinity(0, sizeof(one), &one); /* every perf sample in one ring, as in Python */
	int rounds = atoi(argv[5]);
	printf("{");
	if (ring(argv[1], atol(argv[3]), rounds))
		return 1;
	printf(", ");
	if (perf(argv[2], atol(argv[4]), rounds))
		return 1;
	printf("}\n");
	return 0;
}
