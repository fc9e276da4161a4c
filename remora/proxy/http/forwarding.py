"""Proxy header rules (x-forwarded-for, x-forwarded-proto, x-request-id, via) as pure functions.

These follow Envoy's documented behaviour for `use_remote_address`, `xff_num_trusted_hops`,
`skip_xff_append` and request-id generation, so they can be tested without sockets.
"""

from __future__ import annotations

import ipaddress
import random

from remora.proxy.http.config import HcmConfig
from remora.proxy.http.h1_codec import Headers


class ForwardingDecision:
    """A plain class, not a frozen dataclass: one is built per request, and a frozen
    dataclass's `__init__` goes through `object.__setattr__` for every field."""

    __slots__ = ("headers", "request_id", "trusted_client_address")

    def __init__(self, headers: Headers, trusted_client_address: str, request_id: str | None):
        self.headers = headers
        self.trusted_client_address = trusted_client_address  # Envoy's downstream client
        self.request_id = request_id


def new_request_id() -> str:
    """A random (version 4) UUID string.

    Request ids need uniqueness, not secrecy, so they come from the process PRNG (`uuid.uuid4()`
    makes a getrandom(2) syscall per call). They are made in batches: one random number, one hex
    conversion, then only slicing per id.
    """
    if not _spare_ids:
        _refill_ids()
    return _spare_ids.pop()


_BATCH = 128
_random_bits = random.Random().getrandbits
_spare_ids: list[str] = []


def _refill_ids() -> None:
    raw = bytearray(_random_bits(128 * _BATCH).to_bytes(16 * _BATCH, "little"))
    for offset in range(0, 16 * _BATCH, 16):
        raw[offset + 6] = (raw[offset + 6] & 0x0F) | 0x40  # version 4
        raw[offset + 8] = (raw[offset + 8] & 0x3F) | 0x80  # RFC 9562 variant
    h = raw.hex()
    for i in range(0, 32 * _BATCH, 32):
        _spare_ids.append(
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-"
            f"{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        )


def is_internal(address: str) -> bool:
    """Envoy's classic notion of internal: loopback and RFC 1918 / unique-local addresses."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def _get(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _set(headers: Headers, name: str, value: str) -> None:
    for i, (key, _) in enumerate(headers):
        if key == name:
            headers[i] = (name, value)
            del_indexes = [j for j in range(i + 1, len(headers)) if headers[j][0] == name]
            for j in reversed(del_indexes):
                del headers[j]
            return
    headers.append((name, value))


def apply_forwarding(
    headers: Headers, remote_ip: str, scheme: str, config: HcmConfig
) -> ForwardingDecision:
    """Mutates `headers` (already a private copy) for forwarding upstream."""
    xff = _get(headers, "x-forwarded-for")
    xff_hops = [h.strip() for h in xff.split(",")] if xff else []
    trusted = remote_ip
    if config.use_remote_address:
        if config.xff_num_trusted_hops and len(xff_hops) >= config.xff_num_trusted_hops:
            trusted = xff_hops[len(xff_hops) - config.xff_num_trusted_hops]
        if not config.skip_xff_append:
            _set(headers, "x-forwarded-for", f"{xff}, {remote_ip}" if xff else remote_ip)
        _set(headers, "x-forwarded-proto", scheme)
    else:
        index = len(xff_hops) - 1 - config.xff_num_trusted_hops
        if xff_hops and index >= 0:
            trusted = xff_hops[index]
        if _get(headers, "x-forwarded-proto") is None:
            _set(headers, "x-forwarded-proto", scheme)
    request_id = _get(headers, "x-request-id")
    external = config.use_remote_address and not is_internal(trusted)
    if config.generate_request_id and (
        request_id is None or (external and not config.preserve_external_request_id)
    ):
        request_id = new_request_id()
        _set(headers, "x-request-id", request_id)
    if config.via:
        append_via(headers, config.via)
    return ForwardingDecision(headers, trusted, request_id)


def append_via(headers: Headers, via: str) -> None:
    """RFC 9110 §7.6.3: each proxy adds itself to `via`, on requests and on responses."""
    previous = _get(headers, "via")
    _set(headers, "via", f"{previous}, {via}" if previous else via)
