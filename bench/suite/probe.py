"""Readiness and correctness probe: one HTTP/1.1 GET over a raw socket.

Every peer, HTTP or TCP proxy, ends at the same upstream nginx, so one GET tells both that a peer
is up and that it returns the full body: a proxy that answered fast with the wrong bytes must not
produce a number.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from suite.procs import Proc, ProcessError
from suite.realistic import CATCH_ALL, ECHO_HEADER, REQUEST_ID_HEADER, ROUTE_HEADER


class ProbeError(Exception):
    """The peer did not answer the probe correctly in time."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body_len: int


def get(
    host: str, port: int, path: str, timeout: float = 2.0, tls: bool = False
) -> tuple[int, int]:
    """Return (status, body length) of one GET; raises OSError or ProbeError."""
    response = fetch(host, port, path, timeout, tls=tls)
    return response.status, response.body_len


def fetch(
    host: str,
    port: int,
    path: str,
    timeout: float = 2.0,
    headers: Mapping[str, str] | None = None,
    tls: bool = False,
) -> Response:
    """One GET with `Connection: close` and `headers` (which may replace Host); raises OSError or
    ProbeError."""
    sent = {"Host": f"{host}:{port}", **(headers or {}), "Connection": "close"}
    request_head = "".join(f"{name}: {value}\r\n" for name, value in sent.items())
    with _connect(host, port, timeout, tls) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\n{request_head}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ProbeError(f"{host}:{port}{path}: connection closed before headers")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        got: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            got[name.strip().lower()] = value.strip()
        if "content-length" in got:
            want = int(got["content-length"])
            while len(body) < want:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return Response(status, got, len(body))
        while True:  # chunked or close-delimited: read to EOF (we asked for close)
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return Response(status, got, len(body))


def _connect(host: str, port: int, timeout: float, tls: bool) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if not tls:
        return sock
    # The TLS rows' certificate is self-signed per run: the probe checks the peer serves, and
    # wrk does not verify either.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname="localhost")


def wait_ready(
    proc: Proc,
    host: str,
    port: int,
    path: str,
    body_len: int,
    timeout: float = 20.0,
    tls: bool = False,
) -> None:
    """Poll until the peer serves `path` with the expected body length."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            status, length = get(host, port, path, tls=tls)
        except (OSError, ProbeError, ValueError, IndexError) as exc:
            last = str(exc) or type(exc).__name__
            time.sleep(0.05)
            continue
        if status == 200 and length >= body_len:
            return
        last = f"status {status}, body {length} bytes (want 200 and {body_len})"
        time.sleep(0.05)
    raise ProcessError(f"{proc.name} not ready on {host}:{port}{path}: {last}\n{proc.log_tail()}")


def check_realistic(
    proc: Proc, host: str, port: int, path: str, access_log: Path | None, timeout: float = 5.0
) -> str:
    """Prove that a peer runs the realistic profile's features, not just that it proxies: the
    matched route's response header is there, the upstream received a generated x-request-id
    (the realistic upstream echoes it), and the access log file receives lines. Returns what it
    saw, for the log; raises ProcessError otherwise."""
    problems: list[str] = []
    try:
        response = fetch(host, port, path)
    except (OSError, ProbeError, ValueError, IndexError) as exc:
        raise ProcessError(f"{proc.name}: realistic probe failed: {exc}") from exc
    route = response.headers.get(ROUTE_HEADER, "")
    request_id = response.headers.get(ECHO_HEADER, "")
    if route != CATCH_ALL.name:
        problems.append(f"response header {ROUTE_HEADER}: {route!r}, want {CATCH_ALL.name!r}")
    if len(request_id) < 16:
        problems.append(f"the upstream got {REQUEST_ID_HEADER} {request_id!r}, want a generated id")
    lines = 0
    if access_log is None:
        problems.append("the peer names no access log file")
    else:
        deadline = time.monotonic() + timeout
        while (lines := count_lines(access_log)) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # remora writes its batch on the next loop iteration
        if lines == 0:
            problems.append(f"access log {access_log} received no line")
    if problems:
        raise ProcessError(f"{proc.name}: realistic probe: " + "; ".join(problems))
    return (
        f"{ROUTE_HEADER}: {route}, upstream saw {REQUEST_ID_HEADER} {request_id}, "
        f"{lines} access log line(s)"
    )


def count_lines(path: Path) -> int:
    """Lines in a file so far (0 when it does not exist yet)."""
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
