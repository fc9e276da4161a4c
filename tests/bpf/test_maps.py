from __future__ import annotations

import ctypes
import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from remora.bpf import asm
from remora.bpf.cpus import parse_cpu_list, possible_cpus
from remora.bpf.errors import BPFError, BPFSyscallError
from remora.bpf.maps import Map, MapSpec
from remora.bpf.prog import Program, ProgramSpec
from remora.bpf.sys.types import BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST, MapType, ProgType

pytestmark = pytest.mark.usefixtures("bpf_root")


def make(mtype: MapType, key: int = 4, value: int = 8, n: int = 16, **kw: object) -> Map:
    return Map.create(MapSpec("t_" + mtype.name.lower(), mtype, key, value, n, **kw))  # type: ignore[arg-type]


def test_hash_crud_flags_and_iteration() -> None:
    with make(MapType.HASH) as m:
        m[1] = 10
        m.update(2, 20, BPF_NOEXIST)
        with pytest.raises(BPFSyscallError) as ei:
            m.update(2, 21, BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST
        with pytest.raises(BPFSyscallError) as ei:
            m.update(3, 30, BPF_EXIST)
        assert ei.value.errno == errno.ENOENT
        m.update(2, 22, BPF_EXIST)
        assert m[1] == 10 and m[2] == 22 and m.get(3) is None
        assert 1 in m and 3 not in m
        assert sorted(m) == [1, 2]
        assert dict(m.items()) == {1: 10, 2: 22}
        assert m.lookup_and_delete(1) == 10
        del m[2]
        with pytest.raises(KeyError):
            del m[2]
        with pytest.raises(KeyError):
            _ = m[2]
        assert list(m) == []


def test_flags_beyond_64_bits_are_refused_not_truncated() -> None:
    with make(MapType.HASH) as m:
        for bad in (-1, 1 << 64):
            with pytest.raises(BPFError, match=f"flags = {bad} does not fit"):
                m.update(1, 2, bad)  # the int fast path declines it; the attr refuses it
        assert 1 not in m


def test_hash_full_is_e2big() -> None:
    with make(MapType.HASH, n=2) as m:
        m[1] = 1
        m[2] = 2
        with pytest.raises(BPFSyscallError) as ei:
            m[3] = 3
        assert ei.value.errno == errno.E2BIG


def test_batch_lookup_update_delete() -> None:
    with make(MapType.HASH, n=1000) as m:
        keys = list(range(1000))
        assert m.update_batch(keys, [k * 3 for k in keys]) == 1000
        got = dict(m.lookup_batch(chunk=97))
        assert got == {k: k * 3 for k in keys}
        assert m.delete_batch(keys[:500]) == 500
        assert sorted(k for k, _ in m.lookup_batch()) == keys[500:]
        drained = m.lookup_batch(delete=True)
        assert len(drained) == 500 and list(m) == []


def test_array_and_batch_on_array() -> None:
    with make(MapType.ARRAY, n=4) as m:
        m[3] = 7
        assert [m[i] for i in range(4)] == [0, 0, 0, 7]
        assert list(m) == [0, 1, 2, 3]
        with pytest.raises(BPFSyscallError) as ei:
            del m[0]
        assert ei.value.errno == errno.EINVAL
        assert m.lookup_batch(chunk=3) == [(0, 0), (1, 0), (2, 0), (3, 7)]


@pytest.mark.parametrize("mtype", [MapType.PERCPU_HASH, MapType.PERCPU_ARRAY])
def test_percpu_values_are_a_list_per_possible_cpu(mtype: MapType) -> None:
    ncpu = possible_cpus()
    with make(mtype, value=4, n=4) as m:
        m[1] = list(range(100, 100 + ncpu))
        assert m[1] == list(range(100, 100 + ncpu))
        with pytest.raises(ValueError, match="per-CPU"):
            m[1] = [1] * (ncpu + 1)
        assert dict(m.lookup_batch())[1] == list(range(100, 100 + ncpu))


def test_lru_hash_evicts_instead_of_failing() -> None:
    with make(MapType.LRU_HASH, n=64) as m:
        for k in range(1000):
            m[k] = k
        assert 0 < len(list(m)) <= 64 + possible_cpus() * 8
        assert m[999] == 999


class LpmKey(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 4)]


def test_lpm_trie_longest_prefix_match() -> None:
    spec = MapSpec("lpm", MapType.LPM_TRIE, 8, 4, 16, flags=BPF_F_NO_PREALLOC)
    with Map.create(spec).with_types(key=LpmKey, value=int) as m:
        m[LpmKey(8, (10, 0, 0, 0))] = 8
        m[LpmKey(24, (10, 1, 2, 0))] = 24
        assert m[LpmKey(32, (10, 1, 2, 3))] == 24
        assert m[LpmKey(32, (10, 9, 9, 9))] == 8
        assert m.get(LpmKey(32, (11, 0, 0, 0))) is None


def test_prog_array_stores_program_and_returns_id() -> None:
    spec = ProgramSpec("tail", ProgType.XDP, asm.assemble(asm.return_imm(2)))
    with make(MapType.PROG_ARRAY, value=4, n=4) as m, Program.load(spec) as p:
        m[0] = p
        assert m[0] == p.info().id
        del m[0]
        assert m.get(0) is None


def test_perf_event_array_and_ringbuf_create() -> None:
    with make(MapType.PERF_EVENT_ARRAY, value=4, n=possible_cpus()) as m:
        assert m.info().type == MapType.PERF_EVENT_ARRAY
        with pytest.raises(KeyError):
            del m[0]
    with make(MapType.RINGBUF, key=0, value=0, n=4096) as rb:
        assert rb.info().max_entries == 4096
    with pytest.raises(BPFSyscallError) as ei:
        make(MapType.RINGBUF, key=0, value=0, n=4095)  # must be a power-of-2 page multiple
    assert ei.value.errno == errno.EINVAL


def test_queue_and_stack_order() -> None:
    with make(MapType.QUEUE, key=0, value=4, n=2) as q:
        q.push(1)
        q.push(2)
        with pytest.raises(BPFSyscallError):
            q.push(3)
        q.push(3, BPF_EXIST)  # overwrite the oldest
        assert [q.peek(), q.pop(), q.pop()] == [2, 2, 3]
        with pytest.raises(IndexError):
            q.pop()
    with make(MapType.STACK, key=0, value=4, n=4) as s:
        for v in (1, 2, 3):
            s.push(v)
        assert [s.pop(), s.pop(), s.peek()] == [3, 2, 1]


@pytest.mark.parametrize("outer", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map(outer: MapType) -> None:
    inner_spec = MapSpec("inner", MapType.ARRAY, 4, 4, 1)
    spec = MapSpec("outer", outer, 4, 4, 4, inner=inner_spec)
    with Map.create(spec) as m, Map.create(inner_spec) as inner:
        m[1] = inner
        assert m[1] == inner.info().id


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    srv.close()
    yield cli, conn
    cli.close()
    conn.close()


@pytest.mark.parametrize("mtype", [MapType.SOCKMAP, MapType.SOCKHASH])
def test_sockmap_and_sockhash_hold_sockets(
    mtype: MapType, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    with make(mtype, value=4, n=4) as m:
        m[0] = tcp_pair[0].fileno()
        m[1] = tcp_pair[1].fileno()
        if mtype == MapType.SOCKHASH:
            assert sorted(m) == [0, 1]
        del m[0]
        with pytest.raises((KeyError, BPFSyscallError)):  # the slot is really empty now
            del m[0]
        with pytest.raises(BPFSyscallError):  # only sockets go in
            m[2] = 0


def test_devmap_and_cpumap() -> None:
    lo = socket.if_nametoindex("lo")
    with make(MapType.DEVMAP, value=4, n=4) as d:
        d[0] = lo
        assert d[0] == lo
    with make(MapType.CPUMAP, value=4, n=possible_cpus()) as c:
        c[0] = 192  # queue size
        assert c[0] == 192


def test_freeze_blocks_user_writes() -> None:
    with make(MapType.ARRAY, n=1) as m:
        m[0] = 5
        m.freeze()
        with pytest.raises(BPFSyscallError) as ei:
            m[0] = 6
        assert ei.value.errno == errno.EPERM
        assert m[0] == 5


def test_pin_open_pinned_and_unpin(bpffs_dir: Path) -> None:
    path = bpffs_dir / "counts"
    with make(MapType.HASH) as m:
        m[7] = 70
        m.pin(path)
    with Map.open_pinned(path) as again:
        assert again.type == MapType.HASH and again.key_size == 4 and again.value_size == 8
        assert again[7] == 70
        again.unpin()
        assert not path.exists() and again[7] == 70  # the fd outlives its pin
        with pytest.raises(BPFError, match="not pinned"):
            again.unpin()
    with pytest.raises(BPFSyscallError) as ei:
        Map.open_pinned(path)
    assert ei.value.errno == errno.ENOENT


def test_unpin_refuses_paths_outside_bpffs(tmp_path: Path) -> None:
    from remora.bpf.pin import unpin

    victim = tmp_path / "not-a-pin"
    victim.write_text("keep me")
    with pytest.raises(BPFError, match="not on a bpf filesystem"):
        unpin(victim)
    assert victim.exists()


class Val(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def test_typed_struct_values_decode_in_place() -> None:
    with make(MapType.HASH, value=16).with_types(key=int, value=Val) as m:
        m[1] = Val(3, 300)
        v = m[1]
        assert isinstance(v, Val) and (v.packets, v.bytes) == (3, 300)
        with pytest.raises(TypeError):
            m[2] = b"x" * 16
        batch = m.lookup_batch()
        assert batch[0][1].bytes == 300
    with make(MapType.HASH, value=8) as m, pytest.raises(BPFError, match="16 bytes"):
        m.with_types(value=Val)


def test_bytes_keys_and_bad_sizes() -> None:
    with make(MapType.HASH, key=6, value=4) as m:
        m[b"abcdef"] = 1
        assert m[b"abcdef"] == 1
        with pytest.raises(ValueError):
            m[b"abc"] = 1
    with make(MapType.HASH, key=16, value=4) as m:
        m.with_types(key=int)
        m[1 << 100] = 2
        assert list(m) == [1 << 100]


def test_cpu_list_parsing() -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == 12
    assert parse_cpu_list("0") == 1
    with pytest.raises(BPFError):
        parse_cpu_list("x-y")


def test_fast_path_matches_slow_path_semantics() -> None:
    with make(MapType.HASH, key=4, value=8) as m:
        with pytest.raises(ValueError):
            m[1 << 32] = 1  # too big for the key: rejected, never truncated
        with pytest.raises(ValueError):
            m[-1] = 1
        with pytest.raises(ValueError):
            m[1] = 1 << 64
        m[True] = 5  # bool is an int
        assert m[1] == 5
    with pytest.raises(ValueError, match="closed"):
        m.lookup(1)  # a closed map never reuses a stale fd number


def test_threads_sharing_a_map() -> None:
    import threading

    errors: list[BaseException] = []
    with make(MapType.HASH, n=4096) as m:

        def work(base: int) -> None:
            try:
                for i in range(2000):
                    m[base + i] = base + i
                    assert m[base + i] == base + i
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(b,)) for b in (0, 2000)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert len(m.lookup_batch()) == 4000


def test_batch_struct_values_are_views_of_one_buffer_per_chunk() -> None:
    """At most one copy: per-CPU struct values from a batch are views into the batch buffer."""
    ncpu = possible_cpus()
    with make(MapType.PERCPU_HASH, value=16, n=8).with_types(key=int, value=Val) as m:
        for k in range(3):
            m[k] = [Val(k, c) for c in range(ncpu)]
        batch = m.lookup_batch()
        assert sorted((k, [v.bytes for v in vs]) for k, vs in batch) == [
            (k, list(range(ncpu))) for k in range(3)
        ]
        # Views, not copies: every value sits in one buffer, at its place in the kernel's layout.
        flat = [v for _, vs in batch for v in vs]
        base = ctypes.addressof(flat[0])
        assert [ctypes.addressof(v) - base for v in flat] == [16 * i for i in range(len(flat))]
        single = m[1]
        base = ctypes.addressof(single[0])
        assert [ctypes.addressof(v) - base for v in single] == [16 * i for i in range(ncpu)]


def test_percpu_batch_of_ints_and_bytes() -> None:
    ncpu = possible_cpus()
    with make(MapType.PERCPU_ARRAY, value=4, n=2) as m:
        m[1] = list(range(7, 7 + ncpu))
        assert m.lookup_batch() == [(0, [0] * ncpu), (1, list(range(7, 7 + ncpu)))]
    with make(MapType.PERCPU_ARRAY, value=3, n=2).with_types(value=bytes) as m:
        m[0] = [bytes([c, c, c]) for c in range(ncpu)]
        assert m.lookup_batch()[0] == (0, [bytes([c, c, c]) for c in range(ncpu)])


def test_ctypes_scalars_are_key_and_value_types() -> None:
    with make(MapType.HASH, key=4, value=8).with_types(
        key=ctypes.c_uint32, value=ctypes.c_int64
    ) as m:
        m[7] = -5
        assert m[7] == -5 and isinstance(m[7], int)
        assert m.lookup_batch() == [(7, -5)]
        with pytest.raises(ValueError, match="does not fit in c_long"):
            m[8] = 1 << 63  # ctypes would have wrapped it silently
        with pytest.raises(ValueError, match="does not fit"):
            m[1 << 32] = 1
    with make(MapType.ARRAY, key=4, value=8, n=2).with_types(value=ctypes.c_double) as m:
        m[1] = 2.5
        assert m[1] == 2.5
    with make(MapType.ARRAY, key=4, value=1, n=2).with_types(value=ctypes.c_bool) as m:
        m[0] = True
        assert m[0] is True and m[1] is False
    with make(MapType.HASH, key=4, value=8) as m, pytest.raises(BPFError, match="c_ushort is 2"):
        m.with_types(key=ctypes.c_uint16)
    with make(MapType.HASH) as m, pytest.raises(TypeError, match="ctypes scalar"):
        m.with_types(key=ctypes.c_char_p)


def test_an_unsigned_ctypes_key_keeps_the_fast_path() -> None:
    with make(MapType.HASH, key=4, value=8).with_types(
        key=ctypes.c_uint32, value=ctypes.c_uint64
    ) as m:
        assert m._fast is not None
        m[1] = 2
        assert m[1] == 2


def test_perf_event_array_sizes_default_as_libbpf_gives_them() -> None:
    spec = MapSpec("perf", MapType.PERF_EVENT_ARRAY, 0, 0, 0)
    with Map.create(spec) as m:
        assert (m.key_size, m.value_size, m.max_entries) == (4, 4, possible_cpus())
    assert spec.max_entries == 0  # the spec stays as written; the kernel got the defaults
