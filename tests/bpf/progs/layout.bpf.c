// Structs with holes, tail padding, nesting, arrays and bitfields, for `remora bpf layout`
// (checked against pahole). A map uses each so that clang emits its BTF.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct holes {
	char tag;
	__u64 count;
	char flag;
	__u32 id;
	__u16 port;
};

struct tight {
	__u64 a;
	__u32 b;
	__u16 c;
	__u8 d;
	__u8 e;
};

struct nested {
	__u8 kind;
	struct tight inner;
	__u16 list[3];
	union {
		__u32 v4;
		__u8 v6[16];
	} addr;
	__u8 last;
};

struct wide {
	__u64 words[9];
	__u8 tail;
};

struct bits {
	__u32 a : 3;
	__u32 b : 5;
	__u8 c;
	__u64 d;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct holes);
	__type(value, struct nested);
} m1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct bits);
	__type(value, struct wide);
} m2 SEC(".maps");

char _license[] SEC("license") = "GPL";
