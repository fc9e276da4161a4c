"""A listener at run time: its filter chains' runtimes, and the choice of one per connection.

A listener with one plain chain hands each accepted socket straight to that chain's protocol,
so choosing costs nothing. Otherwise `ChainSelector` is the socket's first protocol: it reads
the ClientHello when the listener has `tls_inspector`, picks the chain by `filter_chain_match`,
and passes the socket and the bytes it read to the chain's protocol (through TLS if the chain
has it), as Envoy's listener filters run before its filter chain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from remora.proxy.filter_chain_match import ConnectionFacts, select_chain
from remora.proxy.http.listener import HttpListener
from remora.proxy.listener_config import InspectorConfig, ListenerConfig
from remora.proxy.listener_stats import ListenerStats
from remora.proxy.stats import Counter, Store
from remora.proxy.tcp.proxy import TcpListener
from remora.proxy.tls.client_hello import ClientHello, inspect

log = logging.getLogger("remora.listener")

ChainRuntime = HttpListener | TcpListener


class InspectorStats:
    """Envoy's `tls_inspector.*`, one tree for the process as in Envoy."""

    __slots__ = (
        "alpn_found",
        "alpn_not_found",
        "client_hello_too_large",
        "sni_found",
        "sni_not_found",
        "tls_found",
        "tls_not_found",
    )

    def __init__(self, store: Store) -> None:
        def counter(name: str) -> Counter:
            return store.counter(f"tls_inspector.{name}")

        self.tls_found = counter("tls_found")
        self.tls_not_found = counter("tls_not_found")
        self.sni_found = counter("sni_found")
        self.sni_not_found = counter("sni_not_found")
        self.alpn_found = counter("alpn_found")
        self.alpn_not_found = counter("alpn_not_found")
        self.client_hello_too_large = counter("client_hello_too_large")

    def record(self, hello: ClientHello) -> None:
        counter: Counter
        if hello.too_large:
            self.client_hello_too_large.inc()
            return
        if not hello.is_tls:
            self.tls_not_found.inc()
            return
        self.tls_found.inc()
        counter = self.sni_found if hello.server_name else self.sni_not_found
        counter.inc()
        counter = self.alpn_found if hello.alpn else self.alpn_not_found
        counter.inc()


class ListenerRuntime:
    def __init__(
        self,
        config: ListenerConfig,
        chains: Sequence[ChainRuntime],
        default_chain: ChainRuntime | None,
        listener_stats: ListenerStats,
        inspector_stats: InspectorStats | None,
    ) -> None:
        self.chains = list(chains)
        self.default_chain = default_chain
        self.listener_stats = listener_stats
        self.inspector_stats = inspector_stats
        self.config = config
        # Chains replaced by an update, kept until their connections have drained.
        self.retired: list[ChainRuntime] = []
        self.protocol_factory: Callable[[], asyncio.Protocol] = self._choose_factory()

    def reconfigure(
        self,
        config: ListenerConfig,
        chains: Sequence[ChainRuntime],
        default_chain: ChainRuntime | None,
        inspector_stats: InspectorStats | None,
    ) -> None:
        kept = {id(chain) for chain in (*chains, default_chain) if chain is not None}
        for chain in self.all_chains:
            if id(chain) not in kept:
                chain.drain()
                self.retired.append(chain)
        self.config = config
        self.chains = list(chains)
        self.default_chain = default_chain
        self.inspector_stats = inspector_stats
        self.protocol_factory = self._choose_factory()

    @property
    def all_chains(self) -> list[ChainRuntime]:
        chains = list(self.chains)
        if self.default_chain is not None:
            chains.append(self.default_chain)
        return chains

    def _choose_factory(self) -> Callable[[], asyncio.Protocol]:
        single = self.config.single_chain
        if single is not None:
            runtime = self.default_chain if single is self.config.default_chain else self.chains[0]
            assert runtime is not None
            return runtime.protocol_factory
        return self._selector

    def _selector(self) -> asyncio.Protocol:
        return ChainSelector(self)

    def new_protocol(self) -> asyncio.Protocol:
        """The server socket's factory: reads `protocol_factory` per connection, so an update
        that changes the chains applies to the next accept."""
        return self.protocol_factory()

    def mark_draining(self) -> None:
        """Responses say `Connection: close` from now; idle connections are left open."""
        for chain in self.all_chains:
            chain.draining = True

    @property
    def connections(self) -> list[object]:
        self.retired = [chain for chain in self.retired if chain.connections]
        return [c for chain in (*self.all_chains, *self.retired) for c in chain.connections]

    def drain(self) -> None:
        for chain in (*self.all_chains, *self.retired):
            chain.drain()

    def close_all(self) -> None:
        for chain in (*self.all_chains, *self.retired):
            chain.close_all()

    def pick(self, facts: ConnectionFacts) -> ChainRuntime | None:
        index = select_chain([chain.match for chain in self.config.chains], facts)
        return self.default_chain if index is None else self.chains[index]


class ChainSelector(asyncio.Protocol):
    """The socket's protocol until its chain is known."""

    def __init__(self, listener: ListenerRuntime) -> None:
        self.listener = listener
        self.inspector: InspectorConfig | None = listener.config.inspector
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        inspector = self.inspector
        if inspector is None:
            self._hand_over(None)
            return
        if inspector.timeout is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(inspector.timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buffer += data
        assert self.inspector is not None
        hello = inspect(self.buffer, self.inspector.max_client_hello)
        if hello is None:
            return
        if self.listener.inspector_stats is not None:
            self.listener.inspector_stats.record(hello)
        if hello.too_large:
            self._close("ClientHello over max_client_hello_size")
            return
        self._hand_over(hello)

    def eof_received(self) -> bool:
        if not self.done:
            self._close("closed before the listener filters were done")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self._cancel_timer()

    def _timed_out(self) -> None:
        self.timer = None
        if self.done:
            return
        assert self.inspector is not None
        if self.inspector.continue_on_timeout:
            self._hand_over(None)
        else:
            self._close("listener filters timed out")

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _close(self, why: str) -> None:
        self.done = True
        self._cancel_timer()
        log.debug("listener %s: %s", self.listener.config.name, why)
        if self.transport is not None:
            self.transport.abort()

    def _hand_over(self, hello: ClientHello | None) -> None:
        self.done = True
        self._cancel_timer()
        transport = self.transport
        assert transport is not None
        sock = transport.get_extra_info("sockname") or ("", 0)
        peer = transport.get_extra_info("peername") or ("", 0)
        facts = ConnectionFacts(
            destination_ip=str(sock[0]),
            destination_port=int(sock[1]),
            source_ip=str(peer[0]),
            source_port=int(peer[1]),
            server_name=hello.server_name if hello is not None else "",
            transport_protocol="tls" if hello is not None and hello.is_tls else "raw_buffer",
            application_protocols=hello.alpn if hello is not None else (),
        )
        chain = self.listener.pick(facts)
        if chain is None:
            self.listener.listener_stats.no_filter_chain_match.inc()
            log.debug("listener %s: no filter chain matches %s", self.listener.config.name, facts)
            transport.abort()
            return
        protocol = chain.protocol_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.buffer and not transport.is_closing():
            # To whoever reads the socket now: a gate (network RBAC) that admitted the
            # connection has handed it on to the next protocol.
            transport.get_protocol().data_received(bytes(self.buffer))  # type: ignore[attr-defined]
        self.buffer.clear()
