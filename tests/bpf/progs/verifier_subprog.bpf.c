// The verifier rejects a static subprogram in .text: the reported source line must be the
// subprogram's marked line, which needs line_info rebased after the subprogram is appended.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __noinline int read_past(struct xdp_md *ctx, int n)
{
	void *data = (void *)(long)ctx->data;

	if (n > 3)
		return n;
	return *(int *)(data + 20); /* SUBPROG_FAIL */
}

SEC("xdp")
int fine(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int calls_bad(struct xdp_md *ctx)
{
	int x = ctx->ingress_ifindex;

	return read_past(ctx, x * 3 + 1);
}

char LICENSE[] SEC("license") = "GPL";
