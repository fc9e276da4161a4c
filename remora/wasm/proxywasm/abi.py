"""The Proxy-Wasm ABI's numbers and its one wire format (serialized header maps).

Values are those of the ABI 0.2.1 specification (proxy-wasm/spec, abi-versions/v0.2.1); 0.2.0
has the same ones. Kept as plain int constants in small classes rather than `enum.IntEnum`:
host calls return them to the guest on every crossing, and an int needs no conversion.
"""

from __future__ import annotations

import struct

ABI_MARKERS = {
    "proxy_abi_version_0_2_1": "0.2.1",
    "proxy_abi_version_0_2_0": "0.2.0",
    "proxy_abi_version_0_1_0": "0.1.0",
}
SUPPORTED_ABIS = frozenset({"0.2.0", "0.2.1"})


class Status:
    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    INTERNAL_FAILURE = 10
    UNIMPLEMENTED = 12


class Action:
    CONTINUE = 0
    PAUSE = 1  # StopIteration in Envoy's words
    # Envoy's SDK-visible extensions of PAUSE for bodies (StopIterationAndBuffer and friends)
    # arrive as other non-zero values; every non-zero action pauses.


class LogLevel:
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5
    NAMES = ("trace", "debug", "info", "warn", "error", "critical")


class BufferType:
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_CALL_MESSAGE = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    FOREIGN_FUNCTION_ARGUMENTS = 8
    LAST = 8


class MapType:
    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3
    GRPC_CALL_INITIAL_METADATA = 4
    GRPC_CALL_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7
    LAST = 7


class StreamType:
    HTTP_REQUEST = 0
    HTTP_RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


class MetricType:
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class PeerType:
    UNKNOWN = 0
    LOCAL = 1
    REMOTE = 2


class WasiErrno:
    SUCCESS = 0
    BADF = 8
    FAULT = 21
    INVAL = 28
    NOSYS = 52
    NOTSUP = 58


# The largest u32: `proxy_set_buffer_bytes(start=MAX_U32, ...)` appends, `size=MAX_U32` replaces
# to the end (SDKs pass 0xFFFFFFFF or i32 MaxInt; both are "past the end").
MAX_U32 = 0xFFFFFFFF

Pairs = list[tuple[bytes, bytes]]

_U32 = struct.Struct("<I")


class MapFormatError(ValueError):
    pass


def encode_map(pairs: Pairs) -> bytes:
    """count:u32, (key_len:u32, value_len:u32) per pair, then each key and value NUL-ended."""
    if not pairs:
        return b""
    sizes = [len(pairs)]
    body = bytearray()
    for key, value in pairs:
        sizes.append(len(key))
        sizes.append(len(value))
        body += key
        body += b"\0"
        body += value
        body += b"\0"
    return struct.pack(f"<{len(sizes)}I", *sizes) + bytes(body)


def encoded_map_size(pairs: Pairs) -> int:
    if not pairs:
        return 0
    return 4 + sum(8 + len(k) + len(v) + 2 for k, v in pairs)


def decode_map(data: bytes) -> Pairs:
    """The inverse of `encode_map`; an empty map may be empty bytes or one NUL byte.

    Every length is checked against what is there, so a guest's malformed map is refused
    as a whole (the caller answers BAD_ARGUMENT) rather than read past its end.
    """
    if len(data) <= 1:
        if data not in (b"", b"\0"):
            raise MapFormatError("a map shorter than its count")
        return []
    if len(data) < 4:
        raise MapFormatError("a map shorter than its count")
    (count,) = _U32.unpack_from(data, 0)
    table_end = 4 + 8 * count
    if table_end > len(data):
        raise MapFormatError(f"a map of {count} pairs does not fit in {len(data)} bytes")
    sizes = struct.unpack_from(f"<{2 * count}I", data, 4)
    pairs: Pairs = []
    at = table_end
    for i in range(count):
        key_len, value_len = sizes[2 * i], sizes[2 * i + 1]
        key_end = at + key_len
        value_end = key_end + 1 + value_len
        if value_end + 1 > len(data):
            raise MapFormatError(f"pair {i} runs past the end of the map")
        if data[key_end] != 0 or data[value_end] != 0:
            raise MapFormatError(f"pair {i} is not NUL-terminated")
        pairs.append((data[at:key_end], data[key_end + 1 : value_end]))
        at = value_end + 1
    return pairs
