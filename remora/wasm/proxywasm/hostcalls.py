"""The `env.proxy_*` host functions of ABI 0.2.0/0.2.1, written against `PluginVm` state.

Written by hand because no library implements a Proxy-Wasm host for Python. Each function
takes the guest's raw i32/i64 arguments, which the raw call path delivers signed: u32 values
(pointers, sizes, `0xFFFFFFFF` as "to the end") are masked back first. Every failure a guest can
cause (a bad pointer, an unknown map, a malformed serialized map) is answered with the ABI's
status code; only a host bug or a failure inside the guest's own allocator propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remora.wasm.proxywasm.abi import (
    MAX_U32,
    BufferType,
    LogLevel,
    MapFormatError,
    MapType,
    MetricType,
    Pairs,
    Status,
    StreamType,
    decode_map,
    encode_map,
    encoded_map_size,
)
from remora.wasm.proxywasm.contexts import LocalReply, StreamContext
from remora.wasm.proxywasm.memory import OutOfBounds

if TYPE_CHECKING:
    from remora.wasm.proxywasm.vm import PluginVm

M32 = 0xFFFFFFFF

# name -> (params, results), one letter per value: i = i32, I = i64.
SIGNATURES: dict[str, tuple[str, str]] = {
    "proxy_log": ("iii", "i"),
    "proxy_get_log_level": ("i", "i"),
    "proxy_get_current_time_nanoseconds": ("i", "i"),
    "proxy_set_tick_period_milliseconds": ("i", "i"),
    "proxy_get_buffer_bytes": ("iiiii", "i"),
    "proxy_set_buffer_bytes": ("iiiii", "i"),
    "proxy_get_buffer_status": ("iii", "i"),
    "proxy_get_header_map_pairs": ("iii", "i"),
    "proxy_set_header_map_pairs": ("iii", "i"),
    "proxy_get_header_map_size": ("ii", "i"),
    "proxy_get_header_map_value": ("iiiii", "i"),
    "proxy_add_header_map_value": ("iiiii", "i"),
    "proxy_replace_header_map_value": ("iiiii", "i"),
    "proxy_remove_header_map_value": ("iii", "i"),
    "proxy_continue_stream": ("i", "i"),
    "proxy_close_stream": ("i", "i"),
    "proxy_continue_request": ("", "i"),
    "proxy_continue_response": ("", "i"),
    "proxy_clear_route_cache": ("", "i"),
    "proxy_get_status": ("iii", "i"),
    "proxy_send_local_response": ("iiiiiiii", "i"),
    "proxy_http_call": ("iiiiiiiiii", "i"),
    "proxy_grpc_call": ("iiiiiiiiiiii", "i"),
    "proxy_grpc_stream": ("iiiiiiiii", "i"),
    "proxy_grpc_send": ("iiii", "i"),
    "proxy_grpc_cancel": ("i", "i"),
    "proxy_grpc_close": ("i", "i"),
    "proxy_set_shared_data": ("iiiii", "i"),
    "proxy_get_shared_data": ("iiiii", "i"),
    "proxy_register_shared_queue": ("iii", "i"),
    "proxy_resolve_shared_queue": ("iiiii", "i"),
    "proxy_enqueue_shared_queue": ("iii", "i"),
    "proxy_dequeue_shared_queue": ("iii", "i"),
    "proxy_define_metric": ("iiii", "i"),
    "proxy_record_metric": ("iI", "i"),
    "proxy_increment_metric": ("iI", "i"),
    "proxy_get_metric": ("ii", "i"),
    "proxy_get_property": ("iiii", "i"),
    "proxy_set_property": ("iiii", "i"),
    "proxy_call_foreign_function": ("iiiiii", "i"),
    "proxy_done": ("", "i"),
    "proxy_set_effective_context": ("i", "i"),
}

# Which callbacks may read or change which map and buffer: a stream's maps live on its context
# only while the owner has put them there (see contexts.py), so "not available now" is
# NOT_FOUND, as the spec's access rules say.
_STREAM_MAPS = frozenset(
    {
        MapType.HTTP_REQUEST_HEADERS,
        MapType.HTTP_REQUEST_TRAILERS,
        MapType.HTTP_RESPONSE_HEADERS,
        MapType.HTTP_RESPONSE_TRAILERS,
    }
)


def _lower(pairs: Pairs) -> Pairs:
    return [(k.lower(), v) for k, v in pairs]


# RFC 9110 field names are tokens; values may hold neither CR, LF nor NUL. A pseudo-header's
# value becomes part of a request or status line, so it may hold no whitespace either.
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PSEUDO = frozenset({b":authority", b":path", b":method", b":scheme", b":status"})


def valid_field(key: bytes, value: bytes) -> bool:
    """Whether a guest-supplied field may enter a header map: what could split a message
    (CR, LF, NUL) or a request line (whitespace in a pseudo-header) is refused."""
    if key in _PSEUDO:
        return bool(value) and not any(c <= 0x20 or c == 0x7F for c in value)
    if not key or not all(c in _TOKEN for c in key):
        return False
    return b"\r" not in value and b"\n" not in value and b"\0" not in value


def valid_map(pairs: Pairs) -> bool:
    return all(valid_field(k, v) for k, v in pairs)


class HostCalls:
    """Bound to one VM; `vm.effective` is the context the guest is acting in."""

    def __init__(self, vm: PluginVm) -> None:
        self.vm = vm

    def table(self) -> dict[str, Callable[..., Any]]:
        return {name: getattr(self, name) for name in SIGNATURES}

    # -- helpers ---------------------------------------------------------------------------
    def _map(self, map_type: int) -> Pairs | None:
        context = self.vm.effective
        if context is None:
            return None
        found = context.maps.get(map_type)
        if found is None and map_type not in _STREAM_MAPS:
            # A call's answer arrives on the root, and the guest may already have made the
            # stream that made the call its effective context.
            return context.root.maps.get(map_type)
        return found

    def _read(self, ptr: int, size: int) -> bytes:
        return self.vm.memory.read(ptr & M32, size & M32)

    # -- logging and time ------------------------------------------------------------------
    def proxy_log(self, level: int, ptr: int, size: int) -> int:
        if not 0 <= level <= LogLevel.CRITICAL:
            return Status.BAD_ARGUMENT
        try:
            message = self._read(ptr, size)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        self.vm.log(level, message.decode("utf-8", "replace"))
        return Status.OK

    def proxy_get_log_level(self, out: int) -> int:
        try:
            self.vm.memory.write_u32(out & M32, self.vm.services.log_level())
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def proxy_get_current_time_nanoseconds(self, out: int) -> int:
        try:
            self.vm.memory.write_u64(out & M32, time.time_ns())
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def proxy_set_tick_period_milliseconds(self, period: int) -> int:
        context = self.vm.effective
        if context is None:
            return Status.BAD_ARGUMENT
        self.vm.set_tick_period(context.root, period & M32)
        return Status.OK

    # -- buffers ---------------------------------------------------------------------------
    def _buffer(self, buffer_type: int) -> bytearray | bytes | None:
        vm = self.vm
        context = vm.effective
        if buffer_type == BufferType.PLUGIN_CONFIGURATION:
            return None if context is None else context.root.configuration
        if buffer_type == BufferType.VM_CONFIGURATION:
            return vm.vm_configuration
        if context is None:
            return None
        if buffer_type in (BufferType.HTTP_CALL_RESPONSE_BODY, BufferType.GRPC_CALL_MESSAGE):
            # Call responses arrive on the root context, but the guest may already have moved
            # its effective context to the stream that made the call.
            found = context.buffers.get(buffer_type)
            return found if found is not None else context.root.buffers.get(buffer_type)
        return context.buffers.get(buffer_type)

    def proxy_get_buffer_bytes(
        self, buffer_type: int, start: int, max_size: int, ptr_out: int, size_out: int
    ) -> int:
        if not 0 <= buffer_type <= BufferType.LAST:
            return Status.BAD_ARGUMENT
        buffer = self._buffer(buffer_type)
        if buffer is None:
            return Status.NOT_FOUND
        start, max_size = start & M32, max_size & M32
        if start > len(buffer):
            return Status.BAD_ARGUMENT
        # A length past the end is clamped to what is there; zero bytes is OK, writing nothing.
        data = bytes(buffer[start : start + max_size])
        try:
            self.vm.memory.give(data, ptr_out & M32, size_out & M32)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def proxy_set_buffer_bytes(
        self, buffer_type: int, start: int, size: int, data_ptr: int, data_size: int
    ) -> int:
        if not 0 <= buffer_type <= BufferType.LAST:
            return Status.BAD_ARGUMENT
        context = self.vm.effective
        buffer = None if context is None else context.buffers.get(buffer_type)
        if buffer is None or buffer_type not in (
            BufferType.HTTP_REQUEST_BODY,
            BufferType.HTTP_RESPONSE_BODY,
            BufferType.DOWNSTREAM_DATA,
            BufferType.UPSTREAM_DATA,
        ):
            return Status.NOT_FOUND
        try:
            data = self._read(data_ptr, data_size)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        start, size = start & M32, size & M32
        if start >= len(buffer):
            buffer += data  # append: start at or past the end (SDKs pass MAX_U32)
        else:
            end = len(buffer) if size == MAX_U32 else min(len(buffer), start + size)
            buffer[start:end] = data
        return Status.OK

    def proxy_get_buffer_status(self, buffer_type: int, size_out: int, flags_out: int) -> int:
        if not 0 <= buffer_type <= BufferType.LAST:
            return Status.BAD_ARGUMENT
        buffer = self._buffer(buffer_type)
        if buffer is None:
            return Status.NOT_FOUND
        try:
            self.vm.memory.write_u32(size_out & M32, len(buffer))
            self.vm.memory.write_u32(flags_out & M32, 0)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    # -- header maps -----------------------------------------------------------------------
    def proxy_get_header_map_pairs(self, map_type: int, ptr_out: int, size_out: int) -> int:
        if not 0 <= map_type <= MapType.LAST:
            return Status.BAD_ARGUMENT
        pairs = self._map(map_type)
        try:
            self.vm.memory.give(encode_map(pairs or []), ptr_out & M32, size_out & M32)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def proxy_get_header_map_size(self, map_type: int, size_out: int) -> int:
        if not 0 <= map_type <= MapType.LAST:
            return Status.BAD_ARGUMENT
        try:
            self.vm.memory.write_u32(size_out & M32, encoded_map_size(self._map(map_type) or []))
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def _writable(self, map_type: int) -> Pairs | None:
        if map_type not in _STREAM_MAPS:
            return None
        return self._map(map_type)

    def _changed(self, map_type: int) -> None:
        context = self.vm.effective
        if context is not None:
            context.changed_maps.add(map_type)

    def proxy_set_header_map_pairs(self, map_type: int, ptr: int, size: int) -> int:
        if not 0 <= map_type <= MapType.LAST:
            return Status.BAD_ARGUMENT
        pairs = self._writable(map_type)
        if pairs is None:
            return Status.NOT_FOUND
        try:
            new = decode_map(self._read(ptr, size))
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        except MapFormatError:
            return Status.BAD_ARGUMENT
        new = _lower(new)
        if not valid_map(new):
            return Status.BAD_ARGUMENT
        pairs[:] = new
        self._changed(map_type)
        return Status.OK

    def proxy_get_header_map_value(
        self, map_type: int, key_ptr: int, key_size: int, ptr_out: int, size_out: int
    ) -> int:
        if not 0 <= map_type <= MapType.LAST:
            return Status.BAD_ARGUMENT
        try:
            key = self._read(key_ptr, key_size).lower()
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        pairs = self._map(map_type)
        if pairs is None:
            return Status.NOT_FOUND
        values = [v for k, v in pairs if k == key]
        if not values:
            return Status.NOT_FOUND
        try:
            # Repeated fields read as one, comma-joined, as Envoy's header map returns them.
            self.vm.memory.give(b",".join(values), ptr_out & M32, size_out & M32)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def _key_value(self, kp: int, ks: int, vp: int, vs: int) -> tuple[bytes, bytes] | None:
        try:
            return self._read(kp, ks).lower(), self._read(vp, vs)
        except OutOfBounds:
            return None

    def proxy_add_header_map_value(self, map_type: int, kp: int, ks: int, vp: int, vs: int) -> int:
        if not 0 <= map_type <= MapType.LAST:
            return Status.BAD_ARGUMENT
        pair = self._key_value(kp, ks, vp, vs)
        if pair is None:
            return Status.INVALID_MEMORY_ACCESS
        if not valid_field(*pair):
            return Status.BAD_ARGUMENT
        pairs = self._writable(map_type)
        if pairs is None:
            return Status.NOT_FOUND
        pairs.append(pair)
        self._changed(map_type)
        return Status.OK

    def proxy_replace_header_map_value(
        self, map_type: int, kp: int, ks: int, vp: int, vs: int
    ) -> int:
        if not 0 <= map_type <= MapType.LAST:
            return Status.BAD_ARGUMENT
        pair = self._key_value(kp, ks, vp, vs)
        if pair is None:
            return Status.INVALID_MEMORY_ACCESS
        if not valid_field(*pair):
            return Status.BAD_ARGUMENT
        pairs = self._writable(map_type)
        if pairs is None:
            return Status.NOT_FOUND
        key, value = pair
        # Replace keeps the first field's place and drops the others; a missing key is added.
        at = next((i for i, (k, _) in enumerate(pairs) if k == key), None)
        if at is None:
            pairs.append(pair)
        else:
            pairs[:] = [
                (key, value) if i == at else p
                for i, p in enumerate(pairs)
                if i == at or p[0] != key
            ]
        self._changed(map_type)
        return Status.OK

    def proxy_remove_header_map_value(self, map_type: int, kp: int, ks: int) -> int:
        if not 0 <= map_type <= MapType.LAST:
            return Status.BAD_ARGUMENT
        try:
            key = self._read(kp, ks).lower()
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        pairs = self._writable(map_type)
        if pairs is None:
            return Status.NOT_FOUND
        kept = [p for p in pairs if p[0] != key]
        if len(kept) != len(pairs):
            pairs[:] = kept
            self._changed(map_type)
        return Status.OK  # removing a missing key is OK

    # -- stream control --------------------------------------------------------------------
    def _stream(self) -> StreamContext | None:
        context = self.vm.effective
        return context if isinstance(context, StreamContext) else None

    def proxy_continue_stream(self, stream_type: int) -> int:
        if not 0 <= stream_type <= StreamType.UPSTREAM:
            return Status.BAD_ARGUMENT
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        stream.continued.append(stream_type)
        self.vm.stream_acted(stream)
        return Status.OK

    def proxy_continue_request(self) -> int:
        return self.proxy_continue_stream(StreamType.HTTP_REQUEST)

    def proxy_continue_response(self) -> int:
        return self.proxy_continue_stream(StreamType.HTTP_RESPONSE)

    def proxy_clear_route_cache(self) -> int:
        self._changed(MapType.HTTP_REQUEST_HEADERS)
        return Status.OK

    def proxy_close_stream(self, stream_type: int) -> int:
        if not 0 <= stream_type <= StreamType.UPSTREAM:
            return Status.BAD_ARGUMENT
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        stream.closed.append(stream_type)
        self.vm.stream_acted(stream)
        return Status.OK

    def proxy_send_local_response(
        self,
        status: int,
        details_ptr: int,
        details_size: int,
        body_ptr: int,
        body_size: int,
        headers_ptr: int,
        headers_size: int,
        grpc_status: int,
    ) -> int:
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        try:
            details = self._read(details_ptr, details_size)
            body = self._read(body_ptr, body_size)
            raw_headers = self._read(headers_ptr, headers_size)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        try:
            headers = _lower(decode_map(raw_headers))
        except MapFormatError:
            return Status.BAD_ARGUMENT
        if not valid_map(headers) or any(k.startswith(b":") for k, _ in headers):
            return Status.BAD_ARGUMENT
        status &= M32
        if not 100 <= status <= 999:
            return Status.BAD_ARGUMENT
        grpc = grpc_status & M32
        stream.local_reply = LocalReply(
            status,
            # Envoy's details are one word: whitespace (an access log line break) becomes _.
            "_".join(details.decode("utf-8", "replace").split()),
            body,
            headers,
            None if grpc > 16 else grpc,  # -1 (u32 max) or anything past UNAUTHENTICATED: none
        )
        self.vm.stream_acted(stream)
        return Status.OK

    def proxy_get_status(self, code_out: int, msg_ptr_out: int, msg_size_out: int) -> int:
        code, message = self.vm.call_status
        try:
            self.vm.memory.write_u32(code_out & M32, code)
            self.vm.memory.give(message, msg_ptr_out & M32, msg_size_out & M32)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    # -- outgoing calls --------------------------------------------------------------------
    def proxy_http_call(
        self,
        cluster_ptr: int,
        cluster_size: int,
        headers_ptr: int,
        headers_size: int,
        body_ptr: int,
        body_size: int,
        trailers_ptr: int,
        trailers_size: int,
        timeout_ms: int,
        id_out: int,
    ) -> int:
        context = self.vm.effective
        if context is None:
            return Status.BAD_ARGUMENT
        try:
            cluster = self._read(cluster_ptr, cluster_size)
            raw_headers = self._read(headers_ptr, headers_size)
            body = self._read(body_ptr, body_size)
            raw_trailers = self._read(trailers_ptr, trailers_size)
            self.vm.memory.check(id_out & M32, 4)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        try:
            headers = _lower(decode_map(raw_headers))
            trailers = _lower(decode_map(raw_trailers))
        except MapFormatError:
            return Status.BAD_ARGUMENT
        names = {k for k, _ in headers}
        if not {b":method", b":path", b":authority"} <= names or not valid_map(headers):
            return Status.BAD_ARGUMENT
        status, call_id = self.vm.http_call(
            context.root, cluster.decode("utf-8", "replace"), headers, body, trailers,
            timeout_ms & M32,
        )  # fmt: skip
        if status == Status.OK:
            self.vm.memory.write_u32(id_out & M32, call_id)
        return status

    def proxy_grpc_call(self, *_args: int) -> int:
        return Status.UNIMPLEMENTED

    def proxy_grpc_stream(self, *_args: int) -> int:
        return Status.UNIMPLEMENTED

    def proxy_grpc_send(self, *_args: int) -> int:
        return Status.UNIMPLEMENTED

    def proxy_grpc_cancel(self, *_args: int) -> int:
        return Status.UNIMPLEMENTED

    def proxy_grpc_close(self, *_args: int) -> int:
        return Status.UNIMPLEMENTED

    # -- shared data and queues ------------------------------------------------------------
    def proxy_set_shared_data(self, kp: int, ks: int, vp: int, vs: int, cas: int) -> int:
        try:
            key, value = self._read(kp, ks), self._read(vp, vs)  # keys keep their case
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return self.vm.shared.set(self.vm.vm_id, key, value, cas & M32)

    def proxy_get_shared_data(
        self, kp: int, ks: int, ptr_out: int, size_out: int, cas_out: int
    ) -> int:
        try:
            key = self._read(kp, ks)
            self.vm.memory.check(cas_out & M32, 4)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        found = self.vm.shared.get(self.vm.vm_id, key)
        if found is None:
            return Status.NOT_FOUND
        value, cas = found
        try:
            self.vm.memory.give(value, ptr_out & M32, size_out & M32)
            self.vm.memory.write_u32(cas_out & M32, cas)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def proxy_register_shared_queue(self, name_ptr: int, name_size: int, id_out: int) -> int:
        context = self.vm.effective
        try:
            name = self._read(name_ptr, name_size).decode("utf-8", "replace")
            self.vm.memory.check(id_out & M32, 4)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        if context is None:
            return Status.BAD_ARGUMENT
        queue_id = self.vm.register_queue(context.root, name)
        self.vm.memory.write_u32(id_out & M32, queue_id)
        return Status.OK

    def proxy_resolve_shared_queue(
        self, vm_ptr: int, vm_size: int, name_ptr: int, name_size: int, id_out: int
    ) -> int:
        try:
            vm_id = self._read(vm_ptr, vm_size).decode("utf-8", "replace")
            name = self._read(name_ptr, name_size).decode("utf-8", "replace")
            self.vm.memory.check(id_out & M32, 4)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        queue_id = self.vm.shared.resolve_queue(vm_id, name)
        if queue_id is None:
            return Status.NOT_FOUND
        self.vm.memory.write_u32(id_out & M32, queue_id)
        return Status.OK

    def proxy_enqueue_shared_queue(self, queue_id: int, value_ptr: int, value_size: int) -> int:
        try:
            value = self._read(value_ptr, value_size)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return self.vm.shared.enqueue(queue_id & M32, value)

    def proxy_dequeue_shared_queue(self, queue_id: int, ptr_out: int, size_out: int) -> int:
        try:
            self.vm.memory.check(ptr_out & M32, 4)
            self.vm.memory.check(size_out & M32, 4)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        status, value = self.vm.shared.dequeue(queue_id & M32)
        if status == Status.OK:
            self.vm.memory.give(value, ptr_out & M32, size_out & M32)
        return status

    # -- metrics ---------------------------------------------------------------------------
    def proxy_define_metric(self, kind: int, name_ptr: int, name_size: int, id_out: int) -> int:
        if kind not in (MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM):
            return Status.BAD_ARGUMENT
        try:
            name = self._read(name_ptr, name_size).decode("utf-8", "replace")
            self.vm.memory.check(id_out & M32, 4)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        metric_id = self.vm.metrics.define(kind, name)
        if metric_id is None:
            return Status.BAD_ARGUMENT
        self.vm.memory.write_u32(id_out & M32, metric_id)
        return Status.OK

    def proxy_record_metric(self, metric_id: int, value: int) -> int:
        return self.vm.metrics.record(metric_id & M32, value & 0xFFFFFFFFFFFFFFFF)

    def proxy_increment_metric(self, metric_id: int, delta: int) -> int:
        return self.vm.metrics.increment(metric_id & M32, delta)  # i64: signed, as given

    def proxy_get_metric(self, metric_id: int, out: int) -> int:
        status, value = self.vm.metrics.get(metric_id & M32)
        if status != Status.OK:
            return status
        try:
            self.vm.memory.write_u64(out & M32, value)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    # -- properties ------------------------------------------------------------------------
    def proxy_get_property(self, path_ptr: int, path_size: int, ptr_out: int, size_out: int) -> int:
        try:
            raw = self._read(path_ptr, path_size)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        value = self.vm.property(raw)
        if value is None:
            return Status.NOT_FOUND
        try:
            self.vm.memory.give(value, ptr_out & M32, size_out & M32)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        return Status.OK

    def proxy_set_property(self, path_ptr: int, path_size: int, value_ptr: int, size: int) -> int:
        try:
            path = self._read(path_ptr, path_size)
            value = self._read(value_ptr, size)
        except OutOfBounds:
            return Status.INVALID_MEMORY_ACCESS
        context = self.vm.effective
        if context is None:
            return Status.NOT_FOUND
        context.filter_state[path.rstrip(b"\0")] = value
        return Status.OK

    def proxy_call_foreign_function(self, *_args: int) -> int:
        return Status.NOT_FOUND  # no foreign functions are registered

    # -- context lifecycle -----------------------------------------------------------------
    def proxy_done(self) -> int:
        context = self.vm.effective
        if context is None or not context.pending_done:
            return Status.NOT_FOUND
        self.vm.context_done(context)
        return Status.OK

    def proxy_set_effective_context(self, context_id: int) -> int:
        context = self.vm.contexts.get(context_id & M32)
        if context is None:
            return Status.BAD_ARGUMENT
        self.vm.effective = context
        return Status.OK
