"""The thread-per-connection baseline must frame HTTP/1.1 correctly, or its numbers mean nothing:
keep-alive on both sides, chunked responses re-framed, `Connection: close` honoured."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "peers" / "threadproxy.py"
BODY = b"x" * 3000


def _serve(listener: socket.socket, accepted: list[int]) -> None:
    """An upstream that answers /chunked with a chunked body and anything else with a
    Content-Length body, keeping each connection alive."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        accepted.append(1)
        threading.Thread(target=_upstream_conn, args=(conn,), daemon=True).start()


def _upstream_conn(conn: socket.socket) -> None:
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            if head.split(b" ")[1] == b"/chunked":
                body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (BODY[:1000], BODY[1000:]))
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"
                )
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY))


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one response; return (head, de-chunked body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        return head, rest[:length]
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += sock.recv(65536)
        if size == 0:
            return head, body
        body += rest[:size]
        rest = rest[size + 2 :]


@pytest.fixture
def proxy() -> Iterator[tuple[int, list[int]]]:
    upstream = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    threading.Thread(target=_serve, args=(upstream, accepted), daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, str(SCRIPT), "--listen", f"127.0.0.1:{port}"]
    argv += ["--upstream", f"127.0.0.1:{upstream.getsockname()[1]}"]
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "threadproxy did not start"
                time.sleep(0.05)
        accepted.clear()
        yield port, accepted
    finally:
        proc.kill()
        proc.wait()
        upstream.close()


def test_keepalive_and_chunked_reframing(proxy: tuple[int, list[int]]) -> None:
    port, accepted = proxy
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for path in ("/plain", "/chunked", "/plain", "/chunked"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            head, body = _read_response(sock)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert body == BODY, path
    assert len(accepted) == 1  # one upstream keep-alive connection served all four


def test_connection_close_is_honoured(proxy: tuple[int, list[int]]) -> None:
    port, _ = proxy
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head, body = _read_response(sock)
        assert b"connection: close" in head.lower()
        assert body == BODY
        assert sock.recv(10) == b""
