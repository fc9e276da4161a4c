"""BPF maps: `MapSpec` (what to create) and `Map` (an fd the kernel made).

A `Map` speaks Python mapping idioms (`m[k]`, `m[k] = v`, `del m[k]`, `k in m`, iteration) on
top of the bpf(2) element commands, plus what mappings lack: update flags, batch operations,
queue/stack push/pop/peek, freeze and pinning. Per-CPU maps take and return a list with one value
per possible CPU. Keys and values go through codecs (`remora.bpf.codec`); a Map is not
thread-safe to *configure* but each operation allocates its own attr, so concurrent operations
from several threads are fine.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from remora.bpf.codec import BytesCodec, Codec, IntCodec, codec_for
from remora.bpf.cpus import possible_cpus
from remora.bpf.errors import BPFError, BPFSyscallError
from remora.bpf.pin import Pinnable, obj_get
from remora.bpf.sys import types as t
from remora.bpf.sys.fd import FD, Closing
from remora.bpf.sys.syscall import CMD, NR_BPF, bpf, bpf_raw, fast_syscall

PERCPU_TYPES = frozenset(
    {
        t.MapType.PERCPU_HASH,
        t.MapType.PERCPU_ARRAY,
        t.MapType.LRU_PERCPU_HASH,
        t.MapType.PERCPU_CGROUP_STORAGE,
    }
)
# Maps whose values are kernel object fds on update (ids on lookup).
FD_VALUE_TYPES = frozenset(
    {
        t.MapType.PROG_ARRAY,
        t.MapType.PERF_EVENT_ARRAY,
        t.MapType.ARRAY_OF_MAPS,
        t.MapType.HASH_OF_MAPS,
        t.MapType.SOCKMAP,
        t.MapType.SOCKHASH,
        t.MapType.CGROUP_ARRAY,
    }
)
KEYLESS_TYPES = frozenset({t.MapType.QUEUE, t.MapType.STACK, t.MapType.BLOOM_FILTER})


@dataclasses.dataclass
class MapSpec:
    """A map to create. `btf_*` fields are set by the ELF loader when the object has BTF."""

    name: str
    type: t.MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner: MapSpec | None = None
    pinning: int = 0  # LIBBPF_PIN_BY_NAME == 1
    numa_node: int = 0
    map_extra: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    key_type: Any = None  # remora.bpf.btf.types.BtfType describing the key, if known
    value_type: Any = None
    contents: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)
    initial_data: bytes | None = None  # global data sections: the whole value of key 0
    freeze: bool = False
    unsupported: str = ""  # why remora cannot create this map (struct_ops), for a clear refusal

    def resolved(self) -> MapSpec:
        """The spec as the kernel gets it: a perf event array that leaves its sizes out gets
        4-byte keys and values and one entry per possible CPU, as libbpf and cilium/ebpf give
        it (the kernel itself refuses max_entries 0)."""
        if self.type != t.MapType.PERF_EVENT_ARRAY:
            return self
        if self.key_size and self.value_size and self.max_entries:
            return self
        return dataclasses.replace(
            self,
            key_size=self.key_size or 4,
            value_size=self.value_size or 4,
            max_entries=self.max_entries or possible_cpus(),
        )

    def compatible(self, info: t.MapInfo) -> str | None:
        """Why an existing (pinned) map cannot stand in for this spec, or None if it can."""
        spec = self.resolved()
        for field, want, have in (
            ("type", int(spec.type), info.type),
            ("key_size", spec.key_size, info.key_size),
            ("value_size", spec.value_size, info.value_size),
            ("max_entries", spec.max_entries, info.max_entries),
        ):
            if want != have:
                return f"{field} is {have}, spec wants {want}"
        return None


# Map types that exist only when the kernel was built with an option; a kernel without it
# refuses them with an errno that says nothing of the reason.
_TYPE_CONFIG = {
    t.MapType.ARENA: "CONFIG_BPF_ARENA",
    t.MapType.STRUCT_OPS: "CONFIG_BPF_JIT",
}


def _refuse_missing_feature(spec: MapSpec) -> None:
    option = _TYPE_CONFIG.get(spec.type)
    if option is None:
        return
    from remora.bpf.kconfig import kernel_config

    try:
        where, config = kernel_config()
    except BPFError:
        return
    if config.get(option) not in ("y", "m"):
        raise BPFError(
            f"map {spec.name!r}: the running kernel has no {spec.type.name.lower()} maps "
            f"({option} is not set in {where})"
        )


def _round8(n: int) -> int:
    return (n + 7) & ~7


class Map(Pinnable, Closing):
    """An owned map fd with its geometry. Close it (or use `with`) to release the fd."""

    _kind = "map"

    def __init__(
        self,
        fd: FD,
        map_type: t.MapType,
        key_size: int,
        value_size: int,
        max_entries: int,
        flags: int = 0,
        name: str = "",
        spec: MapSpec | None = None,
    ) -> None:
        self.fd = fd
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.name = name
        self.spec = spec
        self.pinned: str | None = None  # the path pin() or open_pinned() used
        self.percpu = map_type in PERCPU_TYPES
        self.ncpus = possible_cpus() if self.percpu else 1
        self._stride = _round8(value_size) if self.percpu else value_size
        self.key_codec: Codec = self._default_codec(key_size)
        self.value_codec: Codec = self._default_codec(value_size)
        self._lock = threading.Lock()
        self._fast: tuple[Any, Any, t.MapElemAttr, ctypes.c_void_p, int, int] | None = None
        self._setup_fast()

    def _setup_fast(self) -> None:
        """Preallocated key/value/attr for int->int maps: the single-op hot path.

        Reusing buffers is what lets Python reach ~400k lookups/s (a fresh attr per call costs
        a third of that); the lock keeps it correct when threads share a Map, since ctypes
        releases the GIL around the syscall.
        """
        kc, vc = self.key_codec, self.value_codec
        self._fast = None
        if self.percpu or not isinstance(kc, IntCodec) or not isinstance(vc, IntCodec):
            return
        if kc.ctype is None or vc.ctype is None or self.type in FD_VALUE_TYPES:
            return
        kbuf, vbuf = kc.ctype(), vc.ctype()
        attr = t.MapElemAttr(
            map_fd=self.fd.raw, key=ctypes.addressof(kbuf), value=ctypes.addressof(vbuf)
        )
        ptr = ctypes.c_void_p(ctypes.addressof(attr))
        self._fast = (kbuf, vbuf, attr, ptr, 1 << (8 * kc.size), 1 << (8 * vc.size))

    @staticmethod
    def _default_codec(size: int) -> Codec:
        return IntCodec(size) if size in (1, 2, 4, 8) else codec_for(bytes, size, "map")

    # construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: MapSpec, btf_fd: int = 0, inner_fd: int = 0) -> Map:
        if spec.unsupported:
            raise BPFError(f"map {spec.name!r} cannot be created: {spec.unsupported}")
        spec = spec.resolved()
        try:
            attr = t.MapCreateAttr(
                map_type=int(spec.type),
                key_size=spec.key_size,
                value_size=spec.value_size,
                max_entries=spec.max_entries,
                map_flags=spec.flags,
                inner_map_fd=inner_fd,
                numa_node=spec.numa_node,
                map_name=_obj_name(spec.name),
                map_extra=spec.map_extra,
            )
            if btf_fd and spec.btf_value_type_id:
                attr.btf_fd = btf_fd
                attr.btf_key_type_id = spec.btf_key_type_id
                attr.btf_value_type_id = spec.btf_value_type_id
        except BPFError as e:
            raise BPFError(f"map {spec.name!r}: {e}") from None
        inner: Map | None = None
        if spec.type in (t.MapType.ARRAY_OF_MAPS, t.MapType.HASH_OF_MAPS) and not inner_fd:
            if spec.inner is None:
                raise BPFError(f"map {spec.name!r}: a map-in-map needs an inner map spec")
            inner = cls.create(spec.inner)
            attr.inner_map_fd = inner.fd.raw
        try:
            fd = bpf(t.Cmd.MAP_CREATE, attr, f"map {spec.name!r} type {spec.type.name}")
        except BPFSyscallError:
            _refuse_missing_feature(spec)
            if not attr.btf_fd:
                raise
            # Retry without BTF: old kernels reject some BTF (e.g. DATASEC) but take the map.
            attr.btf_fd = attr.btf_key_type_id = attr.btf_value_type_id = 0
            fd = bpf(t.Cmd.MAP_CREATE, attr, f"map {spec.name!r} type {spec.type.name}")
        finally:
            if inner is not None:
                inner.close()
        m = cls(
            FD(fd, "map"),
            spec.type,
            spec.key_size,
            spec.value_size,
            spec.max_entries,
            spec.flags,
            spec.name,
            spec,
        )
        return m

    @classmethod
    def from_fd(cls, fd: FD, spec: MapSpec | None = None) -> Map:
        info = map_info(fd.raw)
        try:
            mtype = t.MapType(info.type)
        except ValueError:
            fd.close()
            raise BPFError(f"unknown map type {info.type}") from None
        return cls(
            fd,
            mtype,
            info.key_size,
            info.value_size,
            info.max_entries,
            info.map_flags,
            info.name.decode(errors="replace"),
            spec,
        )

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str]) -> Map:
        m = cls.from_fd(FD(obj_get(path), "map"))
        m.pinned = os.fspath(path)
        return m

    def with_types(self, key: Any = None, value: Any = None) -> Map:
        """Use Python types for keys/values (int, bytes, ctypes); checked against BTF if known."""
        if key is not None:
            if self.spec is not None and self.spec.key_type is not None:
                from remora.bpf.btf.check import check_ctype

                check_ctype(key, self.spec.key_type, f"map {self.name!r} key")
            self.key_codec = codec_for(key, self.key_size, f"map {self.name!r} key")
            self._setup_fast()
        if value is not None:
            if self.spec is not None and self.spec.value_type is not None:
                from remora.bpf.btf.check import check_ctype

                check_ctype(value, self.spec.value_type, f"map {self.name!r} value")
            self.value_codec = codec_for(value, self.value_size, f"map {self.name!r} value")
            self._setup_fast()
        return self

    # lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        self._fast = None  # its attr holds the fd number, which the kernel may reuse
        self.fd.close()

    def __repr__(self) -> str:
        return (
            f"Map({self.name!r}, {self.type.name}, key={self.key_size}, value={self.value_size}, "
            f"max_entries={self.max_entries}, fd={self.fd.raw if not self.fd.closed else None})"
        )

    # value buffers --------------------------------------------------------------------------
    def _value_buf(self) -> ctypes._CData:
        if self.percpu:
            return ctypes.create_string_buffer(self._stride * self.ncpus)
        return self.value_codec.new()

    def _encode_value(self, value: Any) -> ctypes._CData:
        if not self.percpu:
            return self.value_codec.encode(value)
        values = list(value)
        if len(values) != self.ncpus:
            raise ValueError(f"per-CPU map needs {self.ncpus} values (one per possible CPU)")
        buf = ctypes.create_string_buffer(self._stride * self.ncpus)
        for i, v in enumerate(values):
            self.value_codec.encode_into(buf, i, self._stride, v)
        return buf

    def _decode_value(self, buf: ctypes._CData) -> Any:
        if not self.percpu:
            return self.value_codec.decode(buf)
        return self.value_codec.decode_many(buf, self.ncpus, self._stride)  # type: ignore[arg-type]

    # element operations --------------------------------------------------------------------
    def _elem(
        self, cmd: t.Cmd, key: ctypes._CData | None, value: ctypes._CData | None, flags: int
    ) -> int:
        attr = t.MapElemAttr(
            map_fd=self.fd.raw,
            key=ctypes.addressof(key) if key is not None else 0,
            value=ctypes.addressof(value) if value is not None else 0,
            flags=flags,
        )
        ret, err = bpf_raw(cmd, attr)
        return err if ret < 0 else 0

    def _check(self, err: int, cmd: t.Cmd) -> None:
        if err:
            raise BPFSyscallError(err, cmd.name, f"map {self.name!r}")

    def lookup(self, key: Any, default: Any = KeyError) -> Any:
        """The value for key; raises KeyError (or returns `default`) when absent."""
        fast = self._fast
        if fast is not None and type(key) is int and 0 <= key < fast[4]:
            kbuf, vbuf, attr, addr, _, _ = fast
            with self._lock:
                kbuf.value = key
                _SET_FLAGS(attr, 0)
                if fast_syscall(NR_BPF, _LOOKUP, addr, _ELEM_SIZE) >= 0:
                    return vbuf.value
                err = ctypes.get_errno()
            if err == errno.ENOENT:
                if default is KeyError:
                    raise KeyError(key)
                return default
            self._check(err, t.Cmd.MAP_LOOKUP_ELEM)
        kbuf = self.key_codec.encode(key)
        vbuf = self._value_buf()
        err = self._elem(t.Cmd.MAP_LOOKUP_ELEM, kbuf, vbuf, 0)
        if err == errno.ENOENT:
            if default is KeyError:
                raise KeyError(key)
            return default
        self._check(err, t.Cmd.MAP_LOOKUP_ELEM)
        return self._decode_value(vbuf)

    def get(self, key: Any, default: Any = None) -> Any:
        return self.lookup(key, default)

    def update(self, key: Any, value: Any, flags: int = t.BPF_ANY) -> None:
        fast = self._fast
        if (
            fast is not None
            and type(key) is int
            and type(value) is int
            and 0 <= key < fast[4]
            and 0 <= value < fast[5]
            and type(flags) is int
            and 0 <= flags <= _U64_MAX
        ):
            kbuf, vbuf, attr, addr, _, _ = fast
            with self._lock:
                kbuf.value = key
                vbuf.value = value
                _SET_FLAGS(attr, flags)
                if fast_syscall(NR_BPF, _UPDATE, addr, _ELEM_SIZE) >= 0:
                    return
                err = ctypes.get_errno()
            self._check(err, t.Cmd.MAP_UPDATE_ELEM)
            return
        kbuf = self.key_codec.encode(key)
        err = self._elem(t.Cmd.MAP_UPDATE_ELEM, kbuf, self._encode_value(value), flags)
        self._check(err, t.Cmd.MAP_UPDATE_ELEM)

    def update_bytes(self, key: bytes, value: bytes, flags: int = t.BPF_ANY) -> None:
        """Write raw bytes, bypassing codecs (global data sections, tools)."""
        kbuf = BytesCodec(self.key_size).encode(key)
        vbuf = ctypes.create_string_buffer(value, len(value))
        if len(value) != self._stride * self.ncpus:
            raise ValueError(f"expected {self._stride * self.ncpus} value bytes, got {len(value)}")
        self._check(self._elem(t.Cmd.MAP_UPDATE_ELEM, kbuf, vbuf, flags), t.Cmd.MAP_UPDATE_ELEM)

    def delete(self, key: Any) -> None:
        err = self._elem(t.Cmd.MAP_DELETE_ELEM, self.key_codec.encode(key), None, 0)
        if err == errno.ENOENT:
            raise KeyError(key)
        self._check(err, t.Cmd.MAP_DELETE_ELEM)

    def lookup_and_delete(self, key: Any) -> Any:
        kbuf = self.key_codec.encode(key)
        vbuf = self._value_buf()
        err = self._elem(t.Cmd.MAP_LOOKUP_AND_DELETE_ELEM, kbuf, vbuf, 0)
        if err == errno.ENOENT:
            raise KeyError(key)
        self._check(err, t.Cmd.MAP_LOOKUP_AND_DELETE_ELEM)
        return self._decode_value(vbuf)

    __getitem__ = lookup

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        return self.lookup(key, None) is not None

    # queue / stack --------------------------------------------------------------------------
    def push(self, value: Any, flags: int = t.BPF_ANY) -> None:
        """Queue/stack push (BPF_EXIST overwrites the oldest entry when full)."""
        err = self._elem(t.Cmd.MAP_UPDATE_ELEM, None, self._encode_value(value), flags)
        self._check(err, t.Cmd.MAP_UPDATE_ELEM)

    def _take(self, cmd: t.Cmd) -> Any:
        vbuf = self._value_buf()
        err = self._elem(cmd, None, vbuf, 0)
        if err == errno.ENOENT:
            raise IndexError(f"{self.type.name.lower()} {self.name!r} is empty")
        self._check(err, cmd)
        return self._decode_value(vbuf)

    def pop(self) -> Any:
        return self._take(t.Cmd.MAP_LOOKUP_AND_DELETE_ELEM)

    def peek(self) -> Any:
        return self._take(t.Cmd.MAP_LOOKUP_ELEM)

    # iteration --------------------------------------------------------------------------------
    def keys(self) -> Iterator[Any]:
        """Keys via BPF_MAP_GET_NEXT_KEY. Concurrent deletes may restart a hash walk."""
        cur: ctypes._CData | None = None
        nxt = self.key_codec.new()
        while True:
            err = self._elem(t.Cmd.MAP_GET_NEXT_KEY, cur, nxt, 0)
            if err == errno.ENOENT:
                return
            self._check(err, t.Cmd.MAP_GET_NEXT_KEY)
            yield self.key_codec.decode(nxt)
            cur, nxt = nxt, self.key_codec.new()

    __iter__ = keys

    def items(self) -> Iterator[tuple[Any, Any]]:
        for k in self.keys():
            v = self.lookup(k, _MISSING)
            if v is not _MISSING:
                yield k, v

    # batch operations ---------------------------------------------------------------------
    def lookup_batch(self, chunk: int = 4096, delete: bool = False) -> list[tuple[Any, Any]]:
        """Every entry through BPF_MAP_LOOKUP_BATCH in chunks of `chunk` entries."""
        cmd = t.Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else t.Cmd.MAP_LOOKUP_BATCH
        vstride = self._stride * self.ncpus
        keys = ctypes.create_string_buffer(self.key_size * chunk)
        values = ctypes.create_string_buffer(vstride * chunk)
        token = max(self.key_size, 8)
        in_b = ctypes.create_string_buffer(token)
        out_b = ctypes.create_string_buffer(token)
        out: list[tuple[Any, Any]] = []
        first = True
        while True:
            attr = t.MapBatchAttr(
                in_batch=0 if first else ctypes.addressof(in_b),
                out_batch=ctypes.addressof(out_b),
                keys=ctypes.addressof(keys),
                values=ctypes.addressof(values),
                count=chunk,
                map_fd=self.fd.raw,
            )
            ret, err = bpf_raw(cmd, attr)
            if ret < 0 and err != errno.ENOENT:
                raise BPFSyscallError(err, cmd.name, f"map {self.name!r}")
            n = attr.count
            if n:
                ks = self.key_codec.decode_many(keys, n, self.key_size)
                # Decoded straight from the batch buffer (ctypes values are views into it), so
                # each chunk gets a fresh buffer instead of a copy per entry.
                flat = self.value_codec.decode_many(values, n * self.ncpus, self._stride)
                values = ctypes.create_string_buffer(vstride * chunk)
                if self.percpu:
                    c = self.ncpus
                    vs = [flat[i * c : (i + 1) * c] for i in range(n)]
                else:
                    vs = flat
                out.extend(zip(ks, vs, strict=True))
            if ret < 0:  # ENOENT: the walk is complete
                return out
            first = False
            ctypes.memmove(in_b, out_b, token)

    def update_batch(
        self, keys: Sequence[Any], values: Sequence[Any], flags: int = t.BPF_ANY
    ) -> int:
        if len(keys) != len(values):
            raise ValueError("update_batch: keys and values differ in length")
        n = len(keys)
        if n == 0:
            return 0
        kbuf = ctypes.create_string_buffer(self.key_size * n)
        vstride = self._stride * self.ncpus
        vbuf = ctypes.create_string_buffer(vstride * n)
        for i, k in enumerate(keys):
            self.key_codec.encode_into(kbuf, i, self.key_size, k)
        for i, v in enumerate(values):
            enc = self._encode_value(v)
            ctypes.memmove(ctypes.addressof(vbuf) + i * vstride, ctypes.byref(enc), vstride)
        attr = t.MapBatchAttr(
            keys=ctypes.addressof(kbuf),
            values=ctypes.addressof(vbuf),
            count=n,
            map_fd=self.fd.raw,
            elem_flags=flags,
        )
        bpf(t.Cmd.MAP_UPDATE_BATCH, attr, f"map {self.name!r} ({attr.count} of {n} done)")
        return int(attr.count)

    def delete_batch(self, keys: Sequence[Any]) -> int:
        n = len(keys)
        if n == 0:
            return 0
        kbuf = ctypes.create_string_buffer(self.key_size * n)
        for i, k in enumerate(keys):
            self.key_codec.encode_into(kbuf, i, self.key_size, k)
        attr = t.MapBatchAttr(keys=ctypes.addressof(kbuf), count=n, map_fd=self.fd.raw)
        ret, err = bpf_raw(t.Cmd.MAP_DELETE_BATCH, attr)
        if ret < 0:
            raise BPFSyscallError(
                err, "MAP_DELETE_BATCH", f"map {self.name!r}: {attr.count} of {n} deleted"
            )
        return int(attr.count)

    def update_many(self, pairs: Iterable[tuple[Any, Any]], flags: int = t.BPF_ANY) -> None:
        for k, v in pairs:
            self.update(k, v, flags)

    # whole-map operations -----------------------------------------------------------------
    def freeze(self) -> None:
        """Make the map read-only for user space (programs still write unless RDONLY_PROG)."""
        bpf(t.Cmd.MAP_FREEZE, t.MapElemAttr(map_fd=self.fd.raw), f"map {self.name!r}")

    def info(self) -> t.MapInfo:
        return map_info(self.fd.raw)


_MISSING: Any = object()
_LOOKUP = CMD[t.Cmd.MAP_LOOKUP_ELEM]
_UPDATE = CMD[t.Cmd.MAP_UPDATE_ELEM]
_ELEM_SIZE = ctypes.c_long(ctypes.sizeof(t.MapElemAttr))
# The field's own setter: the fast path's values are range-checked above, so it skips Attr's
# checking __setattr__ (seven times the cost of the store itself).
_SET_FLAGS = getattr(t.MapElemAttr, "flags").__set__  # noqa: B009 - ctypes fields are dynamic
_U64_MAX = (1 << 64) - 1


def _obj_name(name: str) -> bytes:
    """Kernel object names: at most 15 chars of [A-Za-z0-9_.]."""
    cleaned = "".join(c if c.isalnum() or c in "_." else "_" for c in name)
    return cleaned.encode()[: t.BPF_OBJ_NAME_LEN - 1]


def map_info(fd: int) -> t.MapInfo:
    info = t.MapInfo()
    attr = t.InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(t.Cmd.OBJ_GET_INFO_BY_FD, attr)
    return info
