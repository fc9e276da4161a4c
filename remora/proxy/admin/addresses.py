"""Socket address spelling shared by the /clusters and /listeners renderers."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2


def address_string(address: str, port: int) -> str:
    """`host:port`, bracketing IPv6 as Envoy's `Address::asString()` does."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def socket_address(address: str, port: int) -> address_pb2.Address:
    """The `envoy.config.core.v3.Address` Envoy's admin protos carry for a host or listener."""
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )
