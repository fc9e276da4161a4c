"""How the proxy spells a socket address: one helper, so logs, admin and stats agree."""

from __future__ import annotations


def address_string(address: str, port: int) -> str:
    """`host:port`, bracketing IPv6 (`[::1]:80`) as Envoy's `Address::asString()` does."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
