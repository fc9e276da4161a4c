"""Small converters shared by the compilers: addresses, durations, wrapper values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2
from google.protobuf import duration_pb2

from remora.config import support
from remora.config.errors import ErrorCollector

support.register("envoy.config.core.v3.Address", {"socket_address"})
support.register("envoy.config.core.v3.SocketAddress", {"protocol", "address", "port_value"})


@dataclass(frozen=True, slots=True)
class SocketAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


def optional_seconds(message: object, field: str, default: float | None) -> float | None:
    """A Duration field as seconds; unset gives `default`, and an explicit 0 disables (None)."""
    assert hasattr(message, "HasField")
    if not message.HasField(field):
        return default
    value = seconds(getattr(message, field))
    return value if value > 0 else None


def socket_address(
    address: address_pb2.Address, path: str, errors: ErrorCollector, ip_only: bool = True
) -> SocketAddress | None:
    """The address, checked as the kernel will see it: listeners, the admin and static endpoints
    take an IP literal (as in Envoy, which resolves names only for DNS clusters); `ip_only=False`
    lets a STRICT_DNS cluster name a host."""
    if not address.HasField("socket_address"):
        errors.add(path, "an address needs socket_address")
        return None
    sa = address.socket_address
    if sa.protocol != address_pb2.SocketAddress.TCP:
        errors.add(f"{path}.socket_address.protocol", "not supported: only TCP")
        return None
    if not sa.address:
        errors.add(f"{path}.socket_address.address", "must not be empty")
        return None
    if not 0 <= sa.port_value <= 65535:
        errors.add(f"{path}.socket_address.port_value", "must be 0-65535")
        return None
    if ip_only:
        try:
            ipaddress.ip_address(sa.address)
        except ValueError:
            errors.add(
                f"{path}.socket_address.address",
                f"{sa.address!r} is not an IP address (names are resolved only for STRICT_DNS "
                "cluster endpoints)",
            )
            return None
    return SocketAddress(sa.address, sa.port_value)


def cidr_range(
    cidr: address_pb2.CidrRange, path: str, errors: ErrorCollector
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Envoy's `CidrRange` as a network (host bits allowed, as Envoy masks them), or None with
    an error at `path`."""
    text = f"{cidr.address_prefix}/{cidr.prefix_len.value}"
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        errors.add(path, f"not a CIDR range ({text}): {exc}")
        return None
