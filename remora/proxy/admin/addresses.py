"""Socket address spelling shared by the /clusters and /listeners renderers."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2

from remora.proxy.addresses import address_string

__all__ = ["address_string", "socket_address"]


def socket_address(address: str, port: int) -> address_pb2.Address:
    """The `envoy.config.core.v3.Address` Envoy's admin protos carry for a host or listener."""
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )
