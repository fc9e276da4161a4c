"""A thread-per-connection HTTP/1.1 and TCP proxy on blocking sockets: the baseline that
coroutine proxies are claimed to beat.

It is meant to be a fair version of that design, not a strawman: client connections are kept alive,
each thread keeps its own keep-alive connection to the upstream, requests and responses are framed
by the C parser `httptools` (llhttp, the same one Node.js uses), and bodies are streamed, not
buffered. Thread stacks are capped at 256 KiB (a common tuning for this design) so that 10k idle
connections do not reserve 80 GiB of address space.

    python threadproxy.py --listen 127.0.0.1:8000 --upstream 127.0.0.1:9000 [--mode http|tcp]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading

import httptools  # type: ignore[import-untyped,unused-ignore]

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_RECV = 65536


class ProtocolError(Exception):
    """The peer sent something this proxy cannot frame; the connection is dropped."""


class _Request:
    """Callbacks for httptools.HttpRequestParser: collect one request at a time.

    Keep-alive and method are read when the headers are complete: llhttp resets its state once
    the message is complete, so asking afterwards would answer for the next message."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = True
        self.method = b"GET"
        self.parser: httptools.HttpRequestParser | None = None

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()
        self.method = self.parser.get_method()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Response:
    """Callbacks for httptools.HttpResponseParser that stream the response to the client."""

    def __init__(self, client: socket.socket, close: bool) -> None:
        self.client = client
        self.close = close
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.reason = b""
        self.chunked = False
        self.complete = False
        self.keep_alive = True
        self.parser: httptools.HttpResponseParser | None = None

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, self.reason)]
        has_length = False
        for name, value in self.headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            if lower == b"content-length":
                has_length = True
            lines.append(name + b": " + value + b"\r\n")
        no_body = self.status in (204, 304) or 100 <= self.status < 200
        if not has_length and not no_body:
            self.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        if self.close:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        self.client.sendall(b"".join(lines))

    def on_body(self, body: bytes) -> None:
        if self.chunked:
            self.client.sendall(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.client.sendall(body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.client.sendall(b"0\r\n\r\n")
        self.complete = True


class HttpSession:
    """One client connection and this thread's upstream connection."""

    def __init__(self, client: socket.socket, upstream: tuple[str, int]) -> None:
        self.client = client
        self.upstream_addr = upstream
        self.upstream: socket.socket | None = None

    def run(self) -> None:
        try:
            while self._one_exchange():
                pass
        except (OSError, ProtocolError, httptools.HttpParserError):
            pass
        finally:
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()

    def _read_request(self) -> _Request | None:
        request = _Request()
        request.parser = httptools.HttpRequestParser(request)
        while not request.complete:
            data = self.client.recv(_RECV)
            if not data:
                return None
            request.parser.feed_data(data)
        return request

    def _one_exchange(self) -> bool:
        request = self._read_request()
        if request is None:
            return False
        method = request.method
        keep_alive = request.keep_alive
        body = b"".join(request.body)
        lines = [b"%s %s HTTP/1.1\r\n" % (method, request.url)]
        for name, value in request.headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower == b"content-length":
                continue
            lines.append(name + b": " + value + b"\r\n")
        if body or method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        head = b"".join(lines)
        self._forward(head + body, close=not keep_alive)
        return keep_alive

    def _connect(self) -> socket.socket:
        if self.upstream is None:
            sock = socket.create_connection(self.upstream_addr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.upstream = sock
        return self.upstream

    def _forward(self, raw_request: bytes, close: bool) -> None:
        """Send one request upstream and stream the response back; retry once on a stale
        keep-alive connection (the upstream may have closed it while idle)."""
        for attempt in (0, 1):
            reused = self.upstream is not None
            upstream = self._connect()
            response = _Response(self.client, close)
            parser = httptools.HttpResponseParser(response)
            response.parser = parser
            try:
                upstream.sendall(raw_request)
                while not response.complete:
                    data = upstream.recv(_RECV)
                    if not data:
                        raise ConnectionResetError("upstream closed")
                    parser.feed_data(data)
            except OSError:
                upstream.close()
                self.upstream = None
                if reused and attempt == 0 and response.status == 0:
                    continue
                raise
            if not response.keep_alive:
                upstream.close()
                self.upstream = None
            return


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(_RECV)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def tcp_session(client: socket.socket, upstream_addr: tuple[str, int]) -> None:
    """Two threads per connection, one per direction: the textbook blocking relay."""
    try:
        upstream = socket.create_connection(upstream_addr)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", required=True, type=_addr)
    parser.add_argument("--upstream", required=True, type=_addr)
    parser.add_argument("--mode", choices=["http", "tcp"], default="http")
    args = parser.parse_args(argv)
    threading.stack_size(256 * 1024)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(args.listen)
    listener.listen(4096)
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.mode == "http":
            target = HttpSession(client, args.upstream).run
            thread = threading.Thread(target=target, daemon=True)
        else:
            thread = threading.Thread(target=tcp_session, args=(client, args.upstream), daemon=True)
        thread.start()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
