// SPDX-License-Identifier: GPL-2.0
/* An XDP program for `remora bpf inspect` and `remora bpf run`: counts packets by IP protocol
 * and returns `verdict` (XDP_PASS unless set with --set verdict=N before load). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 256);
    __type(key, __u32);
    __type(value, __u64);
} packets_by_protocol SEC(".maps");

volatile const __u32 verdict = XDP_PASS;

SEC("xdp")
int xdp_prog(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return verdict;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end)
        return verdict;
    __u32 protocol = ip->protocol;
    __u64 *count = bpf_map_lookup_elem(&packets_by_protocol, &protocol);
    if (count)
        __sync_fetch_and_add(count, 1);
    return verdict;
}

char LICENSE[] SEC("license") = "GPL";
