"""Readiness and correctness probe: one HTTP/1.1 GET over a raw socket.

Every peer, HTTP or TCP proxy, ends at the same upstream nginx, so one GET tells both that a peer
is up and that it returns the full body: a proxy that answered fast with the wrong bytes must not
produce a number.
"""

from __future__ import annotations

import socket
import time

from suite.procs import Managed, ProcessError


class ProbeError(Exception):
    """The peer did not answer the probe correctly in time."""


def get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, int]:
    """Return (status, body length) of one GET; raises OSError or ProbeError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ProbeError(f"{host}:{port}{path}: connection closed before headers")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            want = int(headers["content-length"])
            while len(body) < want:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return status, len(body)
        while True:  # chunked or close-delimited: read to EOF (we asked for close)
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, len(body)


def wait_ready(
    proc: Managed, host: str, port: int, path: str, body_len: int, timeout: float = 20.0
) -> None:
    """Poll until the peer serves `path` with the expected body length."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            status, length = get(host, port, path)
        except (OSError, ProbeError, ValueError, IndexError) as exc:
            last = str(exc) or type(exc).__name__
            time.sleep(0.05)
            continue
        if status == 200 and length >= body_len:
            return
        last = f"status {status}, body {length} bytes (want 200 and {body_len})"
        time.sleep(0.05)
    raise ProcessError(f"{proc.name} not ready on {host}:{port}{path}: {last}\n{proc.log_tail()}")
