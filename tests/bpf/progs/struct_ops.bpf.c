// A struct_ops map (a TCP congestion control made of BPF callbacks) beside an ordinary
// program: remora lists both, refuses the struct_ops part by name, and loads the rest.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct tcp_congestion_ops {
	void (*init)(void *sk);
	char name[16];
};

SEC("struct_ops/remora_init")
void remora_init(void *sk) {}

SEC(".struct_ops")
struct tcp_congestion_ops remora_cc = {
	.init = (void *)remora_init,
	.name = "remora",
};

SEC("socket") int plain(void *ctx) { return 4; }

char _license[] SEC("license") = "GPL";
