"""The scenarios: what each peer is asked to do. A scenario is data, so adding one (a Wasm filter,
mTLS, eBPF acceleration) is one more entry in `SCENARIOS`, plus, if it needs a new listener kind, a
mode the peers know how to configure.

Besides the listener mode and the load, a scenario picks the config profile the peers run
(suite/realistic.py), how the upstream treats keep-alive connections (suite/upstream.py), how
many instances of each proxy sit in series, and optionally which peers take part."""

from __future__ import annotations

from dataclasses import dataclass, replace

from suite.loads import ClosedLoop, IdleConnections, Load, OpenLoop
from suite.peers.base import Mode
from suite.realistic import Profile
from suite.upstream import BODIES, DEFAULT_SPEC, REALISTIC_SPEC, UpstreamSpec

#: Istio's published figure for the two-hop row: Envoy adds 0.298 ms at P99 over two sidecars at
#: 1,000 req/s.
ISTIO_TWO_HOP_P99_MS = 0.298


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    mode: Mode  # the listener each peer runs: an HTTP reverse proxy or a TCP proxy
    load: Load
    #: The body the readiness probe checks for (also what the load requests).
    body: str = "1k"
    #: One measured run is enough (the idle scenario reads memory, not a rate).
    single_run: bool = False
    #: The config the peers run: "minimal" (one route, no log) or "realistic".
    profile: Profile = "minimal"
    upstream: UpstreamSpec = DEFAULT_SPEC
    #: Instances of each proxy in series: client -> hop 1 -> ... -> hop N -> upstream.
    hops: int = 1
    #: Only these peers take part (None: all of them); the others sit out with `left_out`.
    peers: frozenset[str] | None = None
    left_out: str = ""
    #: The peers terminate TLS (TLS 1.3, one ECDSA P-256 certificate, their default ciphers).
    tls: bool = False
    #: Hop 1 talks mTLS to hop 2 (each presents the certificate and requires the other's).
    hop_mtls: bool = False

    @property
    def body_bytes(self) -> int:
        return BODIES[self.body]

    @property
    def load_path(self) -> str:
        return "/" + self.body

    def with_load(self, load: Load) -> Scenario:
        return replace(self, load=load)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "keepalive-1k",
        "HTTP/1.1 keep-alive, 1 KiB responses, 32 connections",
        "http",
        ClosedLoop(connections=32, path="/1k"),
    ),
    Scenario(
        "realistic-1k",
        "Realistic config, keep-alive 1 KiB, 32 connections: access log, request ids, 13 routes, "
        "a response header, upstream reconnects every 1,000 requests",
        "http",
        ClosedLoop(connections=32, path="/1k"),
        profile="realistic",
        upstream=REALISTIC_SPEC,
    ),
    Scenario(
        "tls-keepalive-1k",
        "HTTPS keep-alive, 1 KiB responses, 32 connections (TLS 1.3, ECDSA P-256)",
        "http",
        ClosedLoop(connections=32, path="/1k"),
        tls=True,
    ),
    Scenario(
        "tls-newconn-1k",
        "HTTPS, a new connection and a full TLS 1.3 handshake per request, 32 connections",
        "http",
        ClosedLoop(connections=32, path="/1k", close=True),
        tls=True,
    ),
    Scenario(
        "newconn-1k",
        "HTTP/1.1, a new connection per request, 1 KiB responses, 32 connections",
        "http",
        ClosedLoop(connections=32, path="/1k", close=True),
    ),
    Scenario(
        "keepalive-64k",
        "HTTP/1.1 keep-alive, 64 KiB responses, 32 connections",
        "http",
        ClosedLoop(connections=32, path="/64k"),
        body="64k",
    ),
    Scenario(
        "rate-1k",
        "Fixed rate 1,000 req/s, 1 KiB responses (Istio's published condition)",
        "http",
        OpenLoop(rate=1_000, connections=32, path="/1k"),
    ),
    Scenario(
        "two-hop-rate-1k",
        "Two proxies in series at 1,000 req/s, 1 KiB responses: P99 added over direct "
        f"(Istio publishes +{ISTIO_TWO_HOP_P99_MS} ms for Envoy over two hops)",
        "http",
        OpenLoop(rate=1_000, connections=32, path="/1k"),
        hops=2,
        peers=frozenset({"remora", "haproxy", "nginx", "direct"}),
        left_out="not in this row (its one-hop figure is in rate-1k)",
    ),
    Scenario(
        "two-hop-keepalive-1k",
        "Two proxies in series, keep-alive 1 KiB, 32 connections, plaintext between them "
        "(the floor of the mTLS row)",
        "http",
        ClosedLoop(connections=32, path="/1k"),
        hops=2,
        peers=frozenset({"remora", "haproxy"}),
        left_out="not in this row (the mTLS pair's plaintext floor)",
    ),
    Scenario(
        "two-hop-mtls-keepalive-1k",
        "Two proxies in series, keep-alive 1 KiB, 32 connections, mTLS between them "
        "(TLS 1.3, ECDSA P-256, a client certificate required): two sidecars",
        "http",
        ClosedLoop(connections=32, path="/1k"),
        hops=2,
        peers=frozenset({"remora", "haproxy"}),
        left_out="not in this row (the mTLS pair's plaintext floor)",
        hop_mtls=True,
    ),
    Scenario(
        "rate-5k",
        "Fixed rate 5,000 req/s, 1 KiB responses (between the two published rates)",
        "http",
        OpenLoop(rate=5_000, connections=32, path="/1k"),
    ),
    Scenario(
        "rate-10k",
        "Fixed rate 10,000 req/s, 1 KiB responses (the threads-vs-coroutines claim)",
        "http",
        OpenLoop(rate=10_000, connections=32, path="/1k"),
    ),
    Scenario(
        "tcp-bulk",
        "TCP proxy bulk throughput: 1 MiB HTTP responses through a tcp_proxy, 8 connections",
        "tcp",
        ClosedLoop(connections=8, path="/1m"),
        body="1m",
    ),
    Scenario(
        "idle-10k",
        "10,000 idle keep-alive connections: memory per connection",
        "http",
        IdleConnections(count=10_000, path="/1k"),
        single_run=True,
    ),
)

BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}
