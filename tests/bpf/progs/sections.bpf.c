// One program per libbpf section convention; each must get the right type and attach type.
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

SEC("socket") int s_socket(void *ctx) { return 0; }
SEC("xdp") int s_xdp(void *ctx) { return 2; }
SEC("xdp.frags") int s_xdp_frags(void *ctx) { return 2; }
SEC("tc") int s_tc(void *ctx) { return 0; }
SEC("classifier") int s_classifier(void *ctx) { return 0; }
SEC("tcx/ingress") int s_tcx(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_openat") int s_tracepoint(void *ctx) { return 0; }
SEC("tp/sched/sched_switch") int s_tp(void *ctx) { return 0; }
SEC("raw_tp/sys_enter") int s_raw_tp(void *ctx) { return 0; }
SEC("raw_tracepoint/sys_exit") int s_raw_tracepoint(void *ctx) { return 0; }
SEC("tp_btf/sys_enter") int s_tp_btf(void *ctx) { return 0; }
SEC("fentry/bpf_fentry_test1") int s_fentry(void *ctx) { return 0; }
SEC("fexit/bpf_fentry_test1") int s_fexit(void *ctx) { return 0; }
SEC("cgroup_skb/ingress") int s_cgroup_skb_in(void *ctx) { return 1; }
SEC("cgroup_skb/egress") int s_cgroup_skb_eg(void *ctx) { return 1; }
SEC("cgroup/connect4") int s_connect4(void *ctx) { return 1; }
SEC("cgroup/sock_create") int s_sock_create(void *ctx) { return 1; }
SEC("cgroup/sysctl") int s_sysctl(void *ctx) { return 1; }
SEC("sockops") int s_sockops(void *ctx) { return 1; }
SEC("sk_msg") int s_sk_msg(void *ctx) { return 1; }
SEC("sk_skb/stream_verdict") int s_sk_skb_verdict(void *ctx) { return 1; }
SEC("sk_skb/stream_parser") int s_sk_skb_parser(struct __sk_buff *skb) { return skb->len; }
SEC("lsm/file_open") int s_lsm(void *ctx) { return 0; }
SEC("perf_event") int s_perf_event(void *ctx) { return 0; }
SEC("kprobe/do_unlinkat") int s_kprobe(void *ctx) { return 0; }
SEC("uprobe") int s_uprobe(void *ctx) { return 0; }
SEC("kprobe.multi/do_unlink*") int s_kprobe_multi(void *ctx) { return 0; }
SEC("uprobe.multi//usr/bin/true:main") int s_uprobe_multi(void *ctx) { return 0; }
SEC("sk_lookup") int s_sk_lookup(void *ctx) { return 1; }
SEC("flow_dissector") int s_flow_dissector(void *ctx) { return 0; }
SEC("syscall") int s_syscall(void *ctx) { return 0; }
SEC("xdp_legacy_name") int s_legacy_xdp(void *ctx) { return 2; }
SEC("socket1") int s_legacy_socket(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
