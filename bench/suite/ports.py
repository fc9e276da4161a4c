"""Free loopback ports, so that runs never collide with other services on the machine."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for an unused port. Another process could take it before we bind it; the
    peers' readiness check turns that rare race into a clear error rather than wrong numbers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
