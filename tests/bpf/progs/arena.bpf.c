// An arena map, whose map_extra is given with __ulong (a one-value enum in BTF; libbpf's own
// macro is newer than Debian's headers, so it is spelled out here).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define REMORA_CAT2(a, b) a##b
#define REMORA_CAT(a, b) REMORA_CAT2(a, b)
#define __ulong(name, val) enum { REMORA_CAT(__unique_value, __COUNTER__) = (val) } name

struct {
	__uint(type, 33); /* BPF_MAP_TYPE_ARENA */
	__uint(map_flags, 1024); /* BPF_F_MMAPABLE */
	__uint(max_entries, 4); /* pages */
	__ulong(map_extra, 0x40000000); /* where user space maps it */
} arena SEC(".maps");

char _license[] SEC("license") = "GPL";
