"""Hand-assembled DiscoveryResponse bytes.

A protobuf message is the concatenation of its fields, so a response can be built by joining
pre-encoded pieces: each resource is serialized once per snapshot, not once per client. Pushing one
snapshot to a hundred clients then costs a hundred byte joins instead of a hundred serializations of
every resource. Tests parse the result with the real generated message to prove it is well formed.
"""

from __future__ import annotations

from collections.abc import Iterable

# Field numbers from envoy/service/discovery/v3/discovery.proto.
SOTW_VERSION, SOTW_RESOURCES, SOTW_TYPE_URL, SOTW_NONCE = 1, 2, 4, 5
DELTA_SYSTEM_VERSION, DELTA_RESOURCES, DELTA_TYPE_URL, DELTA_REMOVED, DELTA_NONCE = 1, 2, 4, 6, 5
RESOURCE_VERSION, RESOURCE_BODY, RESOURCE_NAME = 1, 2, 3


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes and embedded messages."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return field(number, value.encode()) if value else b""


def sotw_response(version: str, type_url: str, resources: Iterable[bytes], nonce: str) -> bytes:
    """`resources` are already-encoded field-2 entries (see `Resource.sotw_field`)."""
    return b"".join(
        (
            text(SOTW_VERSION, version),
            *resources,
            text(SOTW_TYPE_URL, type_url),
            text(SOTW_NONCE, nonce),
        )
    )


def delta_response(
    system_version: str,
    type_url: str,
    resources: Iterable[bytes],
    removed: Iterable[str],
    nonce: str,
) -> bytes:
    """`resources` are already-encoded field-2 entries (see `Resource.delta_field`)."""
    return b"".join(
        (
            text(DELTA_SYSTEM_VERSION, system_version),
            *resources,
            text(DELTA_TYPE_URL, type_url),
            *(field(DELTA_REMOVED, name.encode()) for name in removed),
            text(DELTA_NONCE, nonce),
        )
    )
