// The verifier must reject xdp_oob; the test asserts the reported source line is the marked one.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_oob(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 first = 0;

	if (data + 4 <= end)
		first = *(__u32 *)data;
	return first + *(__u32 *)(data + 8); /* FAIL_HERE: no bounds check */
}

char LICENSE[] SEC("license") = "GPL";
