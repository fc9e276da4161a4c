"""The HTTP filter chain between the connection manager and the router: Wasm filters.

Decoding walks the filters in order over the request headers, then each request body chunk;
encoding walks them in reverse over the response headers, body and trailers, as in Envoy. A
filter that pauses (returns StopIteration, or StopIterationAndBuffer for a body) holds the
stream: the walk stops there, body bytes are buffered (up to the listener's buffer limit, then
413 for a request and 500 for a response, as Envoy's buffering filters answer), and the walk
resumes from the next filter when the guest calls `proxy_continue_stream`. Any filter may
answer with a local reply; a local reply once the response head has left resets the stream.

Only connection managers configured with Wasm filters build a chain: the exchange's hot path
checks one attribute (`hcm.filter_chain is None`) and pays nothing else.

A filter that fails (trap, deadline, memory, proc_exit) fails its stream closed (503, details
`wasm_fail_stream{<plugin>}`) unless the plugin is fail_open, in which case the stream goes on
without that filter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remora.proxy.http.body import BodyPipe
from remora.proxy.http.route.table import RouteRequest
from remora.proxy.wasm.plugin import WasmPlugin
from remora.proxy.wasm.properties import stream_properties
from remora.wasm.proxywasm.abi import BufferType, MapType, Pairs, StreamType
from remora.wasm.proxywasm.contexts import StreamContext
from remora.wasm.proxywasm.vm import PluginFailure, PluginStartError, PluginVm

if TYPE_CHECKING:
    from remora.proxy.http.exchange import Exchange

log = logging.getLogger("remora.proxy.wasm")

RawHeaders = list[tuple[bytes, bytes]]


def _to_pairs(headers: list[tuple[str, str]]) -> Pairs:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


def _to_headers(pairs: Pairs) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in pairs]


class ChainFactory:
    """What the compiled connection manager config holds: the plugins, in filter order."""

    def __init__(self, plugins: tuple[WasmPlugin, ...], rbac_first: bool) -> None:
        self.plugins = plugins
        self.rbac_first = rbac_first

    def start(self, exchange: Exchange, retry_headers: Any) -> None:
        chain = FilterChain(exchange, self, retry_headers)
        exchange.filters = chain
        chain.start()


class _Filter:
    """One plugin on one stream."""

    __slots__ = ("context", "failed", "plugin", "vm")

    def __init__(self, plugin: WasmPlugin, vm: PluginVm, context: StreamContext) -> None:
        self.plugin = plugin
        self.vm = vm
        self.context = context
        self.failed = False  # fail_open after a failure: skipped for the rest of the stream


class FilterChain:
    def __init__(self, exchange: Exchange, factory: ChainFactory, retry_headers: Any) -> None:
        self.exchange = exchange
        self.factory = factory
        self.retry_headers = retry_headers
        self.filters: list[_Filter] = []
        self.request_pairs: Pairs = []
        self.response_pairs: Pairs = []
        self.decode_at = 0  # next filter to run over the request headers
        self.decoded = False
        self.request_body = bytearray()
        self.request_body_held = False  # a filter paused the request body
        self.body_out: BodyPipe | None = None  # what the filters let pass, when they read bodies
        self.request_ended = False
        self.body_at = 0
        self.encode_at = 0  # position in reverse order
        self.response_head: tuple[int, bool] | None = None
        self.response_body = bytearray()
        self.response_ended = False
        self.response_trailers: Pairs | None = None
        self.encode_stage = 0  # 0: headers, 1: body, 2: done
        self.bypass = False  # set while the chain hands events on to the exchange
        self.finished = False

    # -- set-up ----------------------------------------------------------------------------
    def start(self) -> None:
        exchange = self.exchange
        downstream = exchange.downstream
        listener = downstream.listener
        properties = stream_properties(exchange)
        for plugin in self.factory.plugins:
            plugin.bind(listener)
            try:
                vm, root = plugin.current()
                context = vm.new_stream(root, properties)
            except (PluginFailure, PluginStartError) as exc:
                if self._failed_to_start(plugin, exc):
                    return
                continue
            context.on_actions = self._actions_callback(len(self.filters))
            self.filters.append(_Filter(plugin, vm, context))
        request = exchange.request
        self.request_pairs = [
            (b":authority", exchange.authority.encode("latin-1")),
            (b":path", request.target.encode("latin-1")),
            (b":method", request.method.encode("latin-1")),
            (b":scheme", downstream.scheme.encode("latin-1")),
            *_to_pairs(exchange.request_headers),
        ]
        self._decode_headers()

    def _failed_to_start(self, plugin: WasmPlugin, exc: Exception) -> bool:
        """A plugin whose VM cannot be (re)made: True when that ends the stream."""
        log.error("wasm filter %s: %s", plugin.plugin.name, exc)
        if isinstance(exc, PluginFailure):
            plugin.charge(exc)
        if plugin.plugin.fail_open:
            plugin.stats.fail_open.inc()
            return False
        self._fail_closed(plugin)
        return True

    def _actions_callback(self, index: int) -> Callable[[], None]:
        return lambda: self._on_actions(index)

    # -- calling a filter ------------------------------------------------------------------
    def _call(self, index: int, name: str, *args: int) -> int | None:
        """The filter's callback; None when the stream ended because of it (reply or failure)."""
        entry = self.filters[index]
        try:
            action = entry.vm.call(entry.context, name, *args)
        except PluginFailure as exc:
            entry.plugin.charge(exc)
            if entry.plugin.plugin.fail_open:
                entry.failed = True
                entry.plugin.stats.fail_open.inc()
                return 0
            self._fail_closed(entry.plugin)
            return None
        if self._apply_reply_and_close(entry):
            return None
        return action

    def _apply_reply_and_close(self, entry: _Filter) -> bool:
        context = entry.context
        reply, closed = context.local_reply, context.closed
        if reply is None and not closed:
            return False
        context.local_reply = None
        context.closed = []
        exchange = self.exchange
        if reply is not None:
            self._local_reply(reply.status, reply.body, reply.headers, reply.details)
            return True
        exchange.on_downstream_lost("LR")  # proxy_close_stream: Envoy resets the stream
        return True

    def _local_reply(self, status: int, body: bytes, headers: Pairs, details: str) -> None:
        exchange = self.exchange
        if exchange.done:
            return
        if exchange.head_sent:
            exchange.on_downstream_lost("LR")  # too late for a reply: reset
            return
        exchange._reset_upstream()
        exchange.response_code_details = details or "via_wasm_local_reply"
        self.encode_stage = 2  # a local reply is not passed through the filters again
        self.bypass = True
        try:
            exchange.local_reply(status, body, extra=_to_headers(headers))
        finally:
            self.bypass = False

    def _fail_closed(self, plugin: WasmPlugin) -> None:
        exchange = self.exchange
        if exchange.done:
            return
        if exchange.head_sent:
            exchange.on_downstream_lost("LR")
            return
        exchange._reset_upstream()
        exchange.response_code_details = f"wasm_fail_stream{{{plugin.plugin.name}}}"
        self.encode_stage = 2
        self.bypass = True
        try:
            exchange.local_reply(503, b"")
        finally:
            self.bypass = False

    def _on_actions(self, index: int) -> None:
        """The guest acted on this stream outside its own callback (a tick, a call's answer)."""
        if self.finished or self.exchange.done or index >= len(self.filters):
            return
        entry = self.filters[index]
        if self._apply_reply_and_close(entry):
            return
        continued = entry.context.continued
        entry.context.continued = []
        if StreamType.HTTP_REQUEST in continued and not self.decoded:
            if self.decode_at == index:
                self.decode_at += 1
                self._decode_headers()
            elif self.request_body_held and self.body_at == index:
                self.body_at += 1
                self.request_body_held = False
                self._walk_request_body()
        if StreamType.HTTP_RESPONSE in continued and self.encode_stage < 2:
            self._resume_encode(index)

    # -- request ---------------------------------------------------------------------------
    def _decode_headers(self) -> None:
        exchange = self.exchange
        end = not exchange.request.has_body
        while self.decode_at < len(self.filters):
            entry = self.filters[self.decode_at]
            if not entry.failed:
                entry.context.maps[MapType.HTTP_REQUEST_HEADERS] = self.request_pairs
                action = self._call(
                    self.decode_at, "proxy_on_request_headers", len(self.request_pairs), end
                )
                if action is None:
                    return
                continued = entry.context.continued
                entry.context.continued = []
                if action and StreamType.HTTP_REQUEST not in continued:
                    return  # paused: _on_actions resumes it
            self.decode_at += 1
        self._headers_decoded()

    def _headers_decoded(self) -> None:
        exchange = self.exchange
        request = exchange.request
        pseudo = {k: v for k, v in self.request_pairs if k.startswith(b":")}
        headers = _to_headers([(k, v) for k, v in self.request_pairs if not k.startswith(b":")])
        exchange.authority = pseudo.get(b":authority", b"").decode("latin-1")
        request.target = pseudo.get(b":path", b"/").decode("latin-1") or "/"
        request.method = pseudo.get(b":method", b"GET").decode("latin-1") or "GET"
        if (
            request.has_body
            and request.content_length is not None
            and not any(n == "content-length" for n, _ in headers)
        ):
            # A filter removed the length (it means to change the body): chunk upstream.
            request.content_length = None
            request.chunked = True
        exchange.request_headers = headers
        if request.has_body and self._wants_request_body():
            self._intercept_request_body()
        self.decoded = True
        route_request = RouteRequest(
            method=request.method,
            path=request.target,
            authority=exchange.authority,
            headers=headers,
            scheme=exchange.downstream.scheme,
        )
        exchange.filters_decoded(route_request, self.retry_headers)

    def _wants_request_body(self) -> bool:
        return any(
            not f.failed and f.vm._export("proxy_on_request_body") is not None for f in self.filters
        )

    def _intercept_request_body(self) -> None:
        exchange = self.exchange
        downstream = exchange.downstream
        out = BodyPipe(downstream.listener.buffer_limit, downstream.block_reading)
        exchange.upstream_body = out
        self.body_out = out
        exchange.request.body.attach(self._request_chunk, self._request_end)

    def _request_chunk(self, data: bytes) -> None:
        self.request_body += data
        limit = self.exchange.downstream.listener.buffer_limit
        if self.request_body_held and len(self.request_body) > limit:
            self._local_reply(413, b"Payload Too Large", [], "request_payload_too_large")
            return
        self._walk_request_body()

    def _request_end(self) -> None:
        self.request_ended = True
        self._walk_request_body()

    def _walk_request_body(self) -> None:
        # A filter holding the body is called again for each chunk and at the end, with the
        # whole buffered body (the ABI's "even when the processing is paused").
        if self.exchange.done:
            return
        body = self.request_body
        while self.body_at < len(self.filters):
            entry = self.filters[self.body_at]
            if not entry.failed:
                entry.context.buffers[BufferType.HTTP_REQUEST_BODY] = body
                action = self._call(
                    self.body_at, "proxy_on_request_body", len(body), self.request_ended
                )
                if action is None:
                    return
                continued = entry.context.continued
                entry.context.continued = []
                if action and StreamType.HTTP_REQUEST not in continued:
                    self.request_body_held = True
                    return
            self.request_body_held = False
            self.body_at += 1
        # Every filter let these bytes pass: they go upstream, and the next chunk starts over.
        out = self.body_out
        assert out is not None
        if body:
            out.feed(bytes(body))
            body.clear()
        if self.request_ended:
            out.finish()
        else:
            self.body_at = 0

    # -- response --------------------------------------------------------------------------
    def _reverse(self) -> range:
        return range(len(self.filters) - 1, -1, -1)  # encoding runs the filters backwards

    def on_response_head(self, status: int, raw: RawHeaders, keep_alive: bool) -> None:
        self.response_head = (status, keep_alive)
        self.response_pairs = [(b":status", str(status).encode())] + [
            (k.lower(), v) for k, v in raw
        ]
        self.encode_at = 0
        self._encode_headers()

    def _encode_headers(self) -> None:
        order = self._reverse()
        while self.encode_at < len(order):
            index = order[self.encode_at]
            entry = self.filters[index]
            if not entry.failed:
                entry.context.maps[MapType.HTTP_RESPONSE_HEADERS] = self.response_pairs
                action = self._call(
                    index, "proxy_on_response_headers", len(self.response_pairs), False
                )
                if action is None:
                    return
                continued = entry.context.continued
                entry.context.continued = []
                if action and StreamType.HTTP_RESPONSE not in continued:
                    return
            self.encode_at += 1
        self._emit_head()

    def _emit_head(self) -> None:
        assert self.response_head is not None
        status_text = next((v for k, v in self.response_pairs if k == b":status"), b"")
        status, keep_alive = self.response_head
        if status_text.isdigit() and 100 <= int(status_text) <= 999:
            status = int(status_text)  # a filter may rewrite :status
        raw = [(k, v) for k, v in self.response_pairs if not k.startswith(b":")]
        self.encode_stage = 1
        self.encode_at = 0
        self._pass(lambda: self.exchange.on_response_head(status, raw, keep_alive))
        self._walk_response_body()

    def _pass(self, step: Callable[[], None]) -> None:
        self.bypass = True
        try:
            step()
        finally:
            self.bypass = False

    def on_response_body(self, data: bytes) -> None:
        self.response_body += data
        if self.encode_stage == 1:
            self._walk_response_body()

    def on_response_trailers(self, raw: RawHeaders) -> None:
        self.response_trailers = [(k.lower(), v) for k, v in raw]

    def on_response_complete(self) -> None:
        self.response_ended = True
        if self.encode_stage == 1:
            self._walk_response_body()

    def _walk_response_body(self) -> None:
        exchange = self.exchange
        if exchange.done or self.encode_stage != 1:
            return
        body = self.response_body
        if not body and not self.response_ended:
            return
        order = self._reverse()
        while self.encode_at < len(order):
            index = order[self.encode_at]
            entry = self.filters[index]
            if not entry.failed:
                entry.context.buffers[BufferType.HTTP_RESPONSE_BODY] = body
                action = self._call(index, "proxy_on_response_body", len(body), self.response_ended)
                if action is None:
                    return
                continued = entry.context.continued
                entry.context.continued = []
                if action and StreamType.HTTP_RESPONSE not in continued:
                    if len(body) > exchange.downstream.listener.buffer_limit:
                        self._local_reply(
                            500, b"Internal Server Error", [], "response_payload_too_large"
                        )
                    return
            self.encode_at += 1
        if body:
            chunk = bytes(body)
            body.clear()
            self._pass(lambda: exchange.on_response_body(chunk))
        if self.response_ended:
            self.encode_stage = 2
            self._finish_response()
        else:
            self.encode_at = 0

    def _finish_response(self) -> None:
        exchange = self.exchange
        trailers = self.response_trailers
        if trailers is not None:
            for index in self._reverse():
                entry = self.filters[index]
                if entry.failed:
                    continue
                entry.context.maps[MapType.HTTP_RESPONSE_TRAILERS] = trailers
                if self._call(index, "proxy_on_response_trailers", len(trailers)) is None:
                    return
            final = trailers
            self._pass(lambda: exchange.on_response_trailers(final))
        self._pass(exchange.on_response_complete)

    def _resume_encode(self, index: int) -> None:
        order = self._reverse()
        if self.encode_at >= len(order) or order[self.encode_at] != index:
            return
        self.encode_at += 1
        if self.encode_stage == 0:
            self._encode_headers()
        else:
            self._walk_response_body()

    # -- end -------------------------------------------------------------------------------
    def finish(self) -> None:
        """The exchange ended (replied, failed or abandoned): on_log, on_done, on_delete."""
        if self.finished:
            return
        self.finished = True
        for entry in self.filters:
            context = entry.context
            context.maps.setdefault(MapType.HTTP_REQUEST_HEADERS, self.request_pairs)
            context.maps.setdefault(MapType.HTTP_RESPONSE_HEADERS, self.response_pairs)
            try:
                entry.vm.finish_stream(context)
            except PluginFailure as exc:
                entry.plugin.charge(exc)
