// The physical floor for map operations: libbpf's thin syscall wrappers in a C loop.
// Usage: floor N_SINGLE N_BATCH_ENTRIES  -> prints JSON with ops/s.
#include <bpf/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200000;
	int entries = argc > 2 ? atoi(argv[2]) : 100000;
	__u32 k;
	__u64 v = 1;
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "floor", 4, 8, entries, NULL);
	if (fd < 0) {
		perror("bpf_map_create");
		return 1;
	}
	for (k = 0; k < (__u32)entries; k++)
		bpf_map_update_elem(fd, &k, &v, BPF_ANY);

	double t0 = now();
	for (int i = 0; i < n; i++) {
		k = i % entries;
		bpf_map_lookup_elem(fd, &k, &v);
	}
	double lookup = n / (now() - t0);

	t0 = now();
	for (int i = 0; i < n; i++) {
		k = i % entries;
		bpf_map_update_elem(fd, &k, &v, BPF_ANY);
	}
	double update = n / (now() - t0);

	__u32 *keys = calloc(entries, 4);
	__u64 *vals = calloc(entries, 8);
	__u32 out_batch, total = 0;
	int rounds = 5;
	t0 = now();
	for (int r = 0; r < rounds; r++) {
		void *in = NULL;
		for (;;) {
			__u32 count = 4096;
			int err = bpf_map_lookup_batch(fd, in, &out_batch, keys, vals, &count, NULL);
			total += count;
			if (err)
				break;
			in = &out_batch;
		}
	}
	double batch = total / (now() - t0);
	printf("{\"lookup_ops\": %.0f, \"update_ops\": %.0f, \"batch_entries\": %.0f}\n", lookup,
	       update, batch);
	return 0;
}
