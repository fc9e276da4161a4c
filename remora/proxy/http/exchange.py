"""One request/response exchange: route it, relay it upstream, relay the answer back.

This is the router filter of the connection manager. It is a callback-driven state machine: the
downstream parser feeds request body bytes into a pipe that writes straight to the upstream
socket, and the upstream parser calls `on_response_*`, which write straight to the downstream
socket. Each side pauses the other's reading when its own write buffer is full, so memory stays
bounded whatever the speed of either peer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

from remora.proxy import response_flags as flags
from remora.proxy.accesslog import AccessLogRecord
from remora.proxy.http.authority import valid_authority
from remora.proxy.http.body import BodyPipe
from remora.proxy.http.config import ServerHeader
from remora.proxy.http.forwarding import append_via, apply_forwarding, is_internal
from remora.proxy.http.grpc import (
    DEADLINE_EXCEEDED,
    encode_message,
    format_timeout,
    http_for_status,
    is_grpc,
    parse_timeout,
    status_for_http,
    status_in,
)
from remora.proxy.http.h1_codec import (
    LAST_CHUNK,
    SERVER_APPEND_IF_ABSENT,
    SERVER_OVERWRITE,
    SERVER_PASS_THROUGH,
    Headers,
    RawHeaders,
    decode_headers,
    encode_chunk,
    encode_request_head,
    encode_response_head,
    forward_response_fields,
    response_has_body,
    status_line,
    strip_hop_by_hop,
    transfer_codings,
)
from remora.proxy.http.retry import RetryState
from remora.proxy.http.route import (
    ClusterAction,
    DirectResponseAction,
    RedirectAction,
    RouteRequest,
    RouteResult,
)
from remora.proxy.http.route.retry_rules import (
    CONNECT_FAILED,
    REFUSED_BEFORE_RESPONSE,
    RESET_BEFORE_RESPONSE,
    merge_headers,
    split_retry_headers,
)
from remora.proxy.http.xfcc import XFCC
from remora.proxy.http.xfcc import apply as apply_xfcc
from remora.proxy.rbac.filter import DENIED_BODY as RBAC_DENIED_BODY
from remora.proxy.rbac.filter import RbacConfig
from remora.proxy.rbac.filter import check as rbac_check
from remora.proxy.rbac.policy import Subject
from remora.proxy.upstream.config import (
    PROTOCOL_AUTO,
    PROTOCOL_DOWNSTREAM,
    PROTOCOL_HTTP1,
)
from remora.proxy.upstream.h1_connection import UpstreamProtocolError
from remora.proxy.upstream.h2_pool import UseHttp1
from remora.proxy.upstream.h2_upstream_stream import UpstreamReset
from remora.proxy.upstream.pool import ConnectFailure, HostPool, PoolOverflow

if TYPE_CHECKING:
    from remora.proxy.http.request import Request
    from remora.proxy.http.stream import DownstreamStream, H2Responder
    from remora.proxy.upstream.cluster import Cluster, Host
    from remora.proxy.upstream.h1_connection import UpstreamConnection
    from remora.proxy.upstream.h2_pool import H2HostPool
    from remora.proxy.upstream.h2_upstream import H2UpstreamConnection
    from remora.proxy.upstream.h2_upstream_stream import H2UpstreamStream


# Enum members as constants: comparing identity is cheaper than reading `.value` per request.
_OVERWRITE: Final = ServerHeader.OVERWRITE
_APPEND_IF_ABSENT: Final = ServerHeader.APPEND_IF_ABSENT


class Exchange:
    """Also the sink of the upstream connection it borrows (`on_response_*`, `on_upstream_*`)."""

    __slots__ = (
        "authority",
        "bytes_sent",
        "chunked_response",
        "close_delimited",
        "cluster",
        "connect_task",
        "done",
        "downstream",
        "downstream_blocked",
        "downstream_eof",
        "filters",
        "grpc",
        "h2",
        "h2_upstream",
        "h2_upstream_ended",
        "head_sent",
        "host",
        "keep_alive",
        "max_duration",
        "pending_head",
        "request",
        "request_body_sent",
        "request_headers",
        "request_id",
        "response_code_details",
        "response_flags",
        "response_has_body",
        "response_headers",
        "response_trailers",
        "retry",
        "route",
        "route_deadline",
        "route_timeout",
        "status",
        "stream_deadline",
        "trusted_address",
        "upgraded",
        "upstream",
        "upstream_body",
        "upstream_code",
        "upstream_path",
        "upstream_reading_paused",
        "upstream_started",
        "upstream_tried",
    )

    def __init__(self, downstream: DownstreamStream, request: Request) -> None:
        self.downstream = downstream
        # An HTTP/2 stream frames the response itself; HTTP/1.1's is framed here, in bytes.
        self.h2: H2Responder | None = downstream.h2
        self.request = request
        self.route: RouteResult | None = None
        self.cluster: Cluster | None = None
        self.host: Host | None = None
        self.upstream: UpstreamConnection | None = None
        # The try's stream instead, when the cluster speaks HTTP/2 upstream.
        self.h2_upstream: H2UpstreamStream | None = None
        self.h2_upstream_ended = False  # its response ended with its HEADERS (no body at all)
        self.response_trailers: Headers | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.response_flags = ""  # Envoy's comma-separated flags; most requests have none
        self.response_code_details: str | None = None  # set where remora knows Envoy's
        self.status = 0
        self.response_headers: Headers = []
        self.head_sent = False
        self.pending_head: bytes | None = None
        self.chunked_response = False
        self.close_delimited = False
        self.response_has_body = True
        self.bytes_sent = 0
        self.request_id: str | None = None
        self.upstream_started = 0.0
        # The status charged to the cluster (upstream_rq_<class>xx, upstream_rq_completed): the
        # upstream's own, or the router's 5xx when it gave up on the upstream (as Envoy's
        # router charges both); 0 when neither happened (no host, or a client-side error).
        self.upstream_code = 0
        self.upstream_tried = False  # a connection to the host was attempted: %UPSTREAM_HOST%
        self.upstream_reading_paused = False
        self.downstream_blocked = False
        self.downstream_eof = False  # the client half-closed a tunnel before it was agreed
        # When the route timeout fires (monotonic seconds); the connection's one lazy timer
        # watches it, so a request costs a float here rather than a timer of its own.
        self.route_deadline: float | None = None
        # The cluster's max_stream_duration for the upstream stream under way (each try's own).
        self.stream_deadline: float | None = None
        self.done = False
        self.keep_alive = True
        self.upgraded = False
        self.request_body_sent = False
        self.trusted_address = downstream.remote_ip
        self.request_headers = request.headers
        self.upstream_path = request.target
        self.authority = ""
        self.retry: RetryState | None = None  # only for routes with a retry policy
        # The route timeout this request gets: the route's, or its gRPC caller's grpc-timeout.
        self.route_timeout: float | None = None
        # The connection manager's max_stream_duration, unless the route sets its own.
        self.max_duration = downstream.hcm.max_stream_duration
        # A gRPC call (content-type application/grpc*), looked for on HTTP/2 only: gRPC needs it.
        self.grpc = False
        # The connection manager's Wasm filters on this request (filter_chain.FilterChain).
        self.filters: Any = None
        # What goes upstream as the body: the request's own pipe, or the filters' output.
        self.upstream_body: BodyPipe = request.body

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        downstream = self.downstream
        hcm = downstream.hcm
        request = self.request
        stats = downstream.stats
        stats.downstream_rq_total.inc()
        stats.downstream_rq_active.inc()
        if self.h2 is not None:
            stats.downstream_rq_http2_total.inc()
            self.grpc = is_grpc(request.headers)
        else:
            stats.downstream_rq_http1_total.inc()
            if request.version == "1.0" and not hcm.accept_http_10:
                self.local_reply(426, "Upgrade Required", close=True)
                return
            if request.version not in ("1.0", "1.1"):
                self.local_reply(400, "Bad Request: unsupported HTTP version", close=True)
                return
        authority = ""
        host_count = 0
        envoy_headers = False
        for name, value in request.headers:
            if name == "host":
                authority = value
                host_count += 1
            elif len(name) >= 16 and name.startswith("x-envoy-"):
                # 16: the shortest retry header (x-envoy-retry-on); the length test alone turns
                # away most fields, so requests without them pay ~1 ns per field (mypyc).
                envoy_headers = True
        if host_count > 1:
            self.local_reply(400, "Bad Request: multiple host headers", close=True)
            return
        if request.target[:1] != "/" and request.target != "*":
            absolute = split_absolute_form(request.target)
            if absolute is None:
                self.local_reply(400, "Bad Request: invalid request target", close=True)
                return
            # RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host.
            authority, request.target = absolute
        if not authority:
            if request.version == "1.0" and hcm.default_host_for_http_10:
                authority = hcm.default_host_for_http_10
            elif request.version != "1.0":
                self.local_reply(400, "Bad Request: missing host header", close=True)
                return
        elif not valid_authority(authority):
            self.local_reply(400, "Bad Request: invalid host", close=True)
            return
        self.authority = authority
        if request.upgrade:
            upgrade = _header(request.headers, "upgrade")
            if upgrade is None or upgrade.lower() not in hcm.upgrade_types:
                stats.downstream_rq_ws_on_non_ws_route.inc()
                self.local_reply(403, "upgrade not allowed", close=True)
                return
        # Connection-nominated fields go before the proxy adds its own: a client naming
        # `x-forwarded-for` there must not remove the address the proxy appends.
        xfcc = downstream.xfcc
        if xfcc.keep:
            kept = [(n, v) for n, v in request.headers if n != "host"]
        else:  # Envoy's default sanitizes a client's x-forwarded-client-cert
            kept = [(n, v) for n, v in request.headers if n != "host" and n != XFCC]
        headers, _tokens = strip_hop_by_hop(kept)
        if xfcc.value is not None:
            apply_xfcc(headers, xfcc)
        forwarding = apply_forwarding(headers, downstream.remote_ip, downstream.scheme, hcm)
        self.request_id = forwarding.request_id
        self.trusted_address = forwarding.trusted_client_address
        retry_headers = None
        if envoy_headers:
            # Consumed here, as Envoy's router does; honoured only from trusted clients.
            headers, retry_headers = split_retry_headers(headers)
            if hcm.use_remote_address and not is_internal(self.trusted_address):
                retry_headers = None
        self.request_headers = headers
        route_request = RouteRequest(
            method=request.method,
            path=request.target,
            authority=authority,
            headers=headers,
            scheme=downstream.scheme,
        )
        chain = hcm.filter_chain
        if chain is not None:
            rbac = hcm.rbac if chain.rbac_first else None
            if rbac is not None and not self._rbac_admits(rbac, route_request):
                return
            chain.start(self, retry_headers)  # calls filters_decoded when the filters are done
            return
        if hcm.rbac is not None and not self._rbac_admits(hcm.rbac, route_request):
            return
        self._dispatch(route_request, retry_headers)

    def filters_decoded(self, route_request: RouteRequest, retry_headers: Any) -> None:
        """The Wasm filters passed the request (maybe changed): RBAC if listed after them,
        then the router."""
        if self.done:
            return
        hcm = self.downstream.hcm
        rbac = None if hcm.filter_chain.rbac_first else hcm.rbac
        if rbac is not None and not self._rbac_admits(rbac, route_request):
            return
        self._dispatch(route_request, retry_headers)

    def _dispatch(self, route_request: RouteRequest, retry_headers: Any) -> None:
        downstream = self.downstream
        hcm = downstream.hcm
        request = self.request
        stats = downstream.stats
        route = hcm.route_table.route(route_request)
        if route is None:
            stats.no_route.inc()
            self._add_flag(flags.NO_ROUTE)
            self.local_reply(404, "")
            return
        self.route = route
        action = route.action
        if isinstance(action, DirectResponseAction):
            stats.rq_direct_response.inc()
            self.local_reply(route.status, route.body, raw=True)
            return
        if isinstance(action, RedirectAction):
            stats.rq_redirect.inc()
            self.local_reply(route.status, b"", raw=True, extra=[("location", route.location)])
            return
        assert isinstance(action, ClusterAction)
        cluster = downstream.listener.clusters.get(route.cluster)
        if cluster is None:
            stats.no_cluster.inc()
            self._add_flag(flags.NO_CLUSTER)
            self.local_reply(503, "no healthy upstream")
            return
        self.cluster = cluster
        if request.tunnel and self._upstream_h2(cluster, None):
            self.local_reply(501, "upgrade to an HTTP/2 upstream is not supported", close=True)
            return
        hash_key: int | None = None
        if cluster.hashing and action.hash_policy is not None:
            hash_key = action.hash_policy.key(route_request, downstream.remote_ip)
        host = cluster.pick(hash_key)
        if host is None:
            self._add_flag(flags.NO_HEALTHY_UPSTREAM)
            self.local_reply(503, "no healthy upstream")
            return
        policy = route.retry_policy
        if retry_headers:
            policy = merge_headers(policy, retry_headers)
        if policy is not None and not request.tunnel:
            self.retry = RetryState(
                self, policy, cluster, hash_key, downstream.listener.buffer_limit
            )
        self.route_timeout = route.timeout
        if action.stream_duration_set:
            self.max_duration = action.stream_duration
        if action.grpc_timeout_max is not None and self.grpc:
            self._apply_grpc_timeout(action.grpc_timeout_max, action.grpc_timeout_offset)
        if self.route_timeout is not None and request.complete:
            self._arm_route_timeout(self.route_timeout)
        self.upstream_path = route.path
        if request.has_body and _expects_continue(request):
            # Envoy's default: the proxy answers `Expect: 100-continue` itself (on HTTP/2 as
            # an interim HEADERS frame, which a client waits for just the same).
            if self.h2 is not None:
                self.h2.send_interim(100, [])
            else:
                downstream.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._attempt(host, downstream.last_activity)

    def _apply_grpc_timeout(self, cap: float, offset: float) -> None:
        """Envoy's `grpc_timeout_header_max`: the caller's grpc-timeout, capped (0: no cap)
        and less the offset, is the route timeout, and is what the upstream is told."""
        value = _header(self.request.headers, "grpc-timeout")
        timeout = parse_timeout(value) if value is not None else None
        if timeout is None:
            return
        if cap > 0:
            timeout = min(timeout, cap)
        if offset < timeout:
            timeout -= offset
        self.route_timeout = timeout if timeout > 0 else None
        if self.route_timeout is not None:
            told = format_timeout(self.route_timeout)
            self.request_headers = [
                (n, told if n == "grpc-timeout" else v) for n, v in self.request_headers
            ]

    def refuse(self, status: int, body: str) -> None:
        """A request the downstream codec refuses before routing: counted, and answered."""
        stats = self.downstream.stats
        stats.downstream_rq_total.inc()
        stats.downstream_rq_active.inc()
        if self.h2 is not None:
            stats.downstream_rq_http2_total.inc()
        else:
            stats.downstream_rq_http1_total.inc()
        self._add_flag(flags.DOWNSTREAM_PROTOCOL_ERROR)
        self.local_reply(status, body, close=True)

    def _attempt(self, host: Host, now: float) -> None:
        cluster = self.cluster
        assert cluster is not None
        self.host = host
        cluster.stats.upstream_rq_total.inc()
        cluster.stats.upstream_rq_active.inc()
        host.rq_total += 1
        host.rq_active += 1
        if self.retry is not None:
            self.retry.attempt_started(host, now)
        if self._upstream_h2(cluster, host):
            h2_pool = host.h2_pool_for(self._server_name(host) if cluster.config.auto_sni else "")
            conn = h2_pool.take_ready()
            if conn is not None:
                self._send_h2(conn, now)
            else:
                self.connect_task = asyncio.create_task(self._connect_h2(h2_pool))
            return
        self._attempt_h1(host, now)

    def _attempt_h1(self, host: Host, now: float) -> None:
        cluster = self.cluster
        assert cluster is not None
        pool = host.pool
        if cluster.config.auto_sni:
            name = self._server_name(host)
            if name:
                pool = host.pool_for(name)
        idle = pool.take_idle()
        if idle is not None:
            self._send(idle, now)
        else:
            self.connect_task = asyncio.create_task(self._connect(host, pool))

    def _upstream_h2(self, cluster: Cluster, host: Host | None) -> bool:
        """Whether this request goes upstream over HTTP/2 (the cluster's protocol options);
        for auto_config, whether the host's ALPN chose h2 (or is still to be asked: `host`
        None asks whether it may)."""
        protocol = cluster.config.upstream_protocol
        if protocol == PROTOCOL_HTTP1:
            return False
        if protocol == PROTOCOL_DOWNSTREAM:
            return self.h2 is not None
        if protocol == PROTOCOL_AUTO and host is not None:
            return host.alpn_h2 is not False
        return True

    def _server_name(self, host: Host) -> str:
        """auto_sni: the host the upstream request carries (after the route's rewrites), or
        the `override_auto_sni_header` the request has; without its port."""
        cluster = self.cluster
        assert cluster is not None
        header = cluster.config.auto_sni_header
        if header is not None:
            value = _header(self.request_headers, header)
            if value:
                return _without_port(value)
        return _without_port(self._upstream_authority(host))

    def _upstream_authority(self, host: Host) -> str:
        route = self.route
        assert route is not None
        if route.authority is not None:
            return route.authority
        if route.auto_host_rewrite:
            return host.hostname or str(host)
        return self.authority or str(host)

    def end_attempt(self) -> None:
        """A retry replaces the current attempt: drop its upstream and what it answered."""
        self._reset_upstream()
        body = self.upstream_body
        if body.sink is not None:  # attached, so nothing waits in the pipe: detach loses nothing
            body.detach()
        if self.downstream_blocked:
            self.downstream_blocked = False
            self.downstream.block_reading(False)
        self.upstream_reading_paused = False
        self.request_body_sent = False
        self.status = 0
        self.upstream_code = 0
        self.h2_upstream_ended = False
        self.response_trailers = None

    def retry_attempt(self, host: Host | None) -> None:
        """The back-off ended: the attempt it replaces stops counting as active."""
        old, cluster = self.host, self.cluster
        if old is not None and cluster is not None:
            old.rq_active -= 1
            cluster.stats.upstream_rq_active.dec()
        self.host = None
        if host is None:
            self._add_flag(flags.NO_HEALTHY_UPSTREAM)
            self.local_reply(503, "no healthy upstream")
            return
        self._attempt(host, time.monotonic())

    async def _connect(self, host: Host, pool: HostPool) -> None:
        try:
            upstream = await pool.acquire()
        except PoolOverflow:
            self._overflowed()
            return
        except ConnectFailure as exc:
            self.connect_task = None  # done: a retry must not cancel the task it runs in
            self._connect_failed(host, exc)
            return
        finally:
            self.connect_task = None
        if self.done:
            pool.release(upstream)
            return
        self._send(upstream, time.monotonic())

    async def _connect_h2(self, pool: H2HostPool) -> None:
        try:
            conn = await pool.acquire()
        except PoolOverflow:
            self._overflowed()
            return
        except ConnectFailure as exc:
            self.connect_task = None
            self._connect_failed(pool.host, exc)
            return
        except UseHttp1 as handover:
            # auto_config: the host speaks HTTP/1.1; the connection that learnt it is ours.
            # (Its own name: mypyc types an `except` target by its first binding.)
            self.connect_task = None
            handed = handover.connection
            if self.done:
                if handed is not None:
                    handed.pool.release(handed)
            elif handed is not None:
                self._send(handed, time.monotonic())
            else:
                self._attempt_h1(pool.host, time.monotonic())
            return
        finally:
            self.connect_task = None
        if not self.done:
            self._send_h2(conn, time.monotonic())

    def _overflowed(self) -> None:
        self._add_flag(flags.UPSTREAM_OVERFLOW)
        self._upstream_failed(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        )

    def _connect_failed(self, host: Host, exc: ConnectFailure) -> None:
        self.upstream_tried = True
        if host.outlier is not None:
            host.outlier.on_local_failure(exc.timed_out)
        self._add_flag(flags.UPSTREAM_CONNECTION_FAILURE)
        reason = (
            "upstream connect error or disconnect/reset before headers. "
            f"reset reason: connection {'timeout' if exc.timed_out else 'failure'}"
        )
        if exc.transport_failure:
            reason += f", transport failure reason: {exc.transport_failure}"
        self._upstream_failed(503, reason, CONNECT_FAILED)

    def _add_flag(self, flag: str) -> None:
        self.response_flags = f"{self.response_flags},{flag}" if self.response_flags else flag

    # -- request direction -----------------------------------------------------------------
    def _send(self, upstream: UpstreamConnection, now: float) -> None:
        route = self.route
        host = self.host
        assert route is not None and host is not None
        request = self.request
        self.upstream = upstream
        authority = self._upstream_authority(host)
        # A new list: the access log keeps the request's own (which has no host field).
        headers = [("host", authority), *route.apply_request_headers(self.request_headers)]
        retry = self.retry
        if retry is not None:
            retry.request_headers(headers)
        headers = [(n, v) for n, v in headers if n != "expect"] if request.has_body else headers
        if request.tunnel:
            headers.append(("connection", "upgrade"))
            headers.append(("upgrade", _header(request.headers, "upgrade") or ""))
        elif request.chunked:
            headers.append(("transfer-encoding", "chunked"))
        elif request.content_length is not None:
            headers = [(n, v) for n, v in headers if n != "content-length"]
            headers.append(("content-length", str(request.content_length)))
        head = encode_request_head(request.method, self.upstream_path, headers)
        self.upstream_started = now
        self.upstream_tried = True
        cluster = self.cluster
        if cluster is not None and cluster.config.max_stream_duration is not None:
            self.stream_deadline = deadline = now + cluster.config.max_stream_duration
            self.downstream.deadline_added(deadline)
        upstream.begin(self, head, head_only=request.method == "HEAD")
        # A tunnel's bytes (what the client sent after the upgrade request) wait in the pipe
        # until the upstream agrees with a 101: if it declines, they were never routed and
        # must not reach it, be they tunnel data or a pipelined request. A declined upgrade
        # closes the upstream connection too (request_body_sent stays False).
        if request.has_body and not request.tunnel:
            body = self.upstream_body
            if retry is not None:
                if request.chunked:
                    retry.attach_body(body, self._send_chunk, self._end_chunked)
                else:
                    retry.attach_body(body, upstream.write, self._body_sent)
            elif request.chunked:
                body.attach(self._send_chunk, self._end_chunked)
            else:
                body.attach(upstream.write, self._body_sent)
        elif not request.tunnel:
            self.request_body_sent = True
        if not upstream.writable:
            self.on_upstream_writable(False)

    def _send_h2(self, conn: H2UpstreamConnection, now: float) -> None:
        """The request as one stream on an HTTP/2 connection: the same header rules as
        HTTP/1.1's, with pseudo-headers for the request line and host, and no framing fields
        (h2 frames the body; RFC 9113 §8.2.2 allows `te: trailers` only, which gRPC needs)."""
        route = self.route
        host = self.host
        cluster = self.cluster
        assert route is not None and host is not None and cluster is not None
        request = self.request
        headers = route.apply_request_headers(self.request_headers)
        retry = self.retry
        if retry is not None:
            retry.request_headers(headers)
        has_body = request.has_body
        fields = [
            (b":method", request.method.encode("latin-1")),
            (b":scheme", b"https" if cluster.config.tls is not None else b"http"),
            (b":authority", self._upstream_authority(host).encode("latin-1")),
            (b":path", self.upstream_path.encode("latin-1")),
        ]
        for name, value in headers:
            if name == "host" or name == "content-length" or (has_body and name == "expect"):
                continue
            fields.append((name.encode("latin-1"), value.encode("latin-1")))
        if has_body and request.content_length is not None:
            fields.append((b"content-length", str(request.content_length).encode()))
        if _wants_trailers(request.headers):
            fields.append((b"te", b"trailers"))
        stream = conn.open_stream(self)
        self.h2_upstream = stream
        self.upstream_started = now
        self.upstream_tried = True
        if cluster.config.max_stream_duration is not None:
            self.stream_deadline = deadline = now + cluster.config.max_stream_duration
            self.downstream.deadline_added(deadline)
        stream.begin(fields, not has_body)
        if self.h2_upstream is not stream:
            return  # h2 refused the head: the stream failed, and the exchange heard why
        if has_body:
            if retry is not None:
                retry.attach_body(self.upstream_body, stream.send_data, self._end_h2_request)
            else:
                self.upstream_body.attach(stream.send_data, self._end_h2_request)
        else:
            self.request_body_sent = True
        if not stream.writable:
            self.on_upstream_writable(False)

    def _end_h2_request(self) -> None:
        stream = self.h2_upstream
        if stream is not None:
            stream.end_request(self.request.trailers)
        self.request_body_sent = True

    def on_request_complete(self) -> None:
        """The request's last byte arrived: Envoy's route timeout counts from here."""
        if not self.done and self.route_deadline is None and self.route_timeout is not None:
            self._arm_route_timeout(self.route_timeout)

    def _arm_route_timeout(self, timeout: float) -> None:
        # Armed from inside the read that completed the request, whose time the connection holds.
        self.route_deadline = deadline = self.downstream.last_activity + timeout
        self.downstream.deadline_added(deadline)

    def _send_chunk(self, data: bytes) -> None:
        if self.upstream is not None and data:
            self.upstream.write(encode_chunk(data))

    def _end_chunked(self) -> None:
        if self.upstream is not None:
            self.upstream.write(LAST_CHUNK)
        self._body_sent()

    def _body_sent(self) -> None:
        self.request_body_sent = True

    def on_upstream_writable(self, writable: bool) -> None:
        """The upstream socket's buffer filled or drained: stop or resume reading the client."""
        if writable == (not self.downstream_blocked):
            return
        self.downstream_blocked = not writable
        self.downstream.block_reading(not writable)

    def on_downstream_writable(self, writable: bool) -> None:
        upstream: UpstreamConnection | H2UpstreamStream | None = self.upstream
        if upstream is None:
            upstream = self.h2_upstream
            if upstream is None:
                return
        if writable and self.upstream_reading_paused:
            self.upstream_reading_paused = False
            upstream.resume_reading()
        elif not writable and not self.upstream_reading_paused:
            self.upstream_reading_paused = True
            upstream.pause_reading()

    def on_downstream_eof(self) -> None:
        if not self.upgraded:
            self.downstream_eof = True  # passed on once the tunnel is agreed
            return
        transport = self.upstream.transport if self.upstream is not None else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()

    # -- response direction (ResponseSink) --------------------------------------------------
    def on_response_head(self, status: int, raw: RawHeaders, keep_alive: bool) -> None:
        if self.done or self.head_sent:
            return
        downstream = self.downstream
        hcm = downstream.hcm
        request = self.request
        route = self.route
        assert route is not None
        filters = self.filters
        if filters is None or not filters.bypass:
            if status == 101 and not request.tunnel:
                # A 101 to a request that did not ask to upgrade is a protocol error upstream.
                self._upstream_protocol_error()
                return
            self.upstream_code = status
            host = self.host
            if host is not None:
                if status >= 500:
                    host.rq_error += 1
                else:
                    host.rq_success += 1
                if host.outlier is not None:
                    host.outlier.on_status(status)
            if self.retry is not None and self.retry.on_response(status, raw):
                return
            if self.grpc:
                self._charge_grpc_status(raw)
            if filters is not None:
                # The Wasm filters see the response the router settled on (after retries);
                # they hand it back through here, with `bypass` set.
                filters.on_response_head(status, raw, keep_alive)
                return
        self.status = status
        upgrade = status == 101
        self.response_has_body = has_body = response_has_body(request.method, status)
        elapsed = str(int((time.monotonic() - self.upstream_started) * 1000))
        if self.h2 is not None:
            self._h2_response_head(self.h2, status, raw, has_body, elapsed)
            return
        # A response that starts before the request ends closes the connection (see
        # on_response_complete): say so, rather than let the client expect to reuse it. So
        # does a declined upgrade: what the client sent after it was never routed.
        close = (
            downstream.wants_close_after(request)
            or not request.complete
            or (request.tunnel and not upgrade)
        )
        forwarded = None
        if (
            not upgrade
            and route.plain_response
            and not hcm.via
            and not hcm.access_logs
            and not hcm.always_set_request_id_in_response
        ):
            mode = hcm.server_header
            forwarded = forward_response_fields(
                raw,
                hcm.server_name.encode("latin-1"),
                SERVER_OVERWRITE
                if mode is _OVERWRITE
                else SERVER_APPEND_IF_ABSENT
                if mode is _APPEND_IF_ABSENT
                else SERVER_PASS_THROUGH,
                status == 204,
            )
        if forwarded is not None:
            parts, has_length = forwarded
            parts.insert(0, status_line(status))
            parts.append(b"\r\nx-envoy-upstream-service-time: ")
            parts.append(elapsed.encode())
            if has_body and not has_length:
                if request.version == "1.1":
                    self.chunked_response = True
                    parts.append(b"\r\ntransfer-encoding: chunked")
                else:
                    self.close_delimited = True
                    close = True
            if close:
                parts.append(b"\r\nconnection: close")
                self.keep_alive = False
            elif request.version == "1.0":
                parts.append(b"\r\nconnection: keep-alive")
            parts.append(b"\r\n\r\n")
            self.head_sent = True
            self.pending_head = b"".join(parts)
            if not has_body:
                self._flush_head()
                if not downstream.writable:
                    self.on_downstream_writable(False)
            # else held back to leave in one write with body bytes from the same read (one
            # syscall, one packet); `on_read_done` flushes it if no body came with it.
            return
        headers = decode_headers(raw)
        out, _ = strip_hop_by_hop(headers)
        # RFC 9112 §6.1: codings other than chunked are forwarded as they came, re-chunked.
        codings = transfer_codings([v for n, v in headers if n == "transfer-encoding"])
        if codings and codings[-1] == "chunked":
            codings.pop()
        if "chunked" in codings or (codings and has_body and request.version != "1.1"):
            # Chunked applied twice (or not last, with more after it), or codings that an
            # HTTP/1.0 client cannot be sent: there is no faithful way to pass this on.
            self._upstream_protocol_error()
            return
        if status == 204:
            out = [h for h in out if h[0] != "content-length"]  # RFC 9110 §8.6
        content_length = _header(out, "content-length")
        out = self._proxy_response_fields(out, elapsed)
        if upgrade:
            self.upgraded = True
            out.append(("connection", "upgrade"))
            out.append(("upgrade", _header(headers, "upgrade") or ""))
            downstream.stats.downstream_cx_upgrades_total.inc()
            downstream.stats.downstream_cx_upgrades_active.inc()
            downstream.tunnel_mode = True
            # Request timeouts do not apply to a tunnel: its streams end when a peer closes.
            self.route_deadline = self.stream_deadline = None
        elif has_body and content_length is None:
            if request.version == "1.1":
                self.chunked_response = True
                codings.append("chunked")
                out.append(("transfer-encoding", ", ".join(codings)))
            else:
                self.close_delimited = True
                close = True
        if not upgrade:
            if close:
                out.append(("connection", "close"))
                self.keep_alive = False
            elif request.version == "1.0":
                out.append(("connection", "keep-alive"))
        self.response_headers = out
        self.head_sent = True
        head = encode_response_head(status, out)
        if self.response_has_body and not upgrade:
            # Held back to leave in one write with body bytes from the same read (one syscall,
            # one packet); `on_read_done` flushes it if no body came with it.
            self.pending_head = head
            return
        downstream.write(head)
        if upgrade and self.upstream is not None:
            # The upstream agreed: what the client sent since the upgrade request may now pass.
            request.body.attach(self.upstream.write, _noop)
            if self.downstream_eof:
                self.on_downstream_eof()
        if not downstream.writable:
            self.on_downstream_writable(False)

    def _h2_response_head(
        self, h2: H2Responder, status: int, raw: RawHeaders, has_body: bool, elapsed: str
    ) -> None:
        """The response head for an HTTP/2 client: the same header rules as HTTP/1.1's
        general path, without the framing fields (HTTP/2 frames the body itself)."""
        out, _ = strip_hop_by_hop(decode_headers(raw))
        if status == 204 or status == 304:
            out = [h for h in out if h[0] != "content-length"]
        out = self._proxy_response_fields(out, elapsed)
        self.response_headers = out
        self.head_sent = True
        # An HTTP/2 upstream's HEADERS with END_STREAM stay one frame (a gRPC trailers-only
        # response is told apart from headers by exactly that).
        h2.send_head(status, out, not has_body or self.h2_upstream_ended)
        if not self.downstream.writable:
            self.on_downstream_writable(False)

    def _proxy_response_fields(self, out: Headers, elapsed: str) -> Headers:
        """What the proxy does to every relayed response head, whatever the protocol: the
        route's header rules, via, server, the upstream's service time and the request id."""
        hcm = self.downstream.hcm
        route = self.route
        assert route is not None
        out = route.apply_response_headers(out)
        if hcm.via:
            append_via(out, hcm.via)
        _apply_server_header(out, hcm.server_name, hcm.server_header)
        # Set, not appended: behind another proxy the upstream's own figure would repeat.
        out = [h for h in out if h[0] != "x-envoy-upstream-service-time"]
        out.append(("x-envoy-upstream-service-time", elapsed))
        if (
            hcm.always_set_request_id_in_response
            and self.request_id is not None
            and _header(out, "x-request-id") is None
        ):
            out.append(("x-request-id", self.request_id))
        return out

    def on_interim_response(self, status: int, raw: RawHeaders) -> None:
        """A 1xx other than 101. RFC 9110 §15.2: a proxy forwards these, except one it caused
        itself (100: the proxy answers `Expect: 100-continue` on its own) and never to an
        HTTP/1.0 client. It is not the response: the final one still follows."""
        if self.done or self.head_sent or status == 100 or self.request.version == "1.0":
            return
        out, _ = strip_hop_by_hop(decode_headers(raw))
        if self.retry is not None:
            self.retry.response_started()  # the client has bytes of this try's answer
        downstream = self.downstream
        if self.h2 is not None:
            self.h2.send_interim(status, out)
            return
        downstream.write(encode_response_head(status, out))
        if not downstream.writable and not self.upstream_reading_paused:
            self.on_downstream_writable(False)

    def on_response_body(self, data: bytes) -> None:
        filters = self.filters
        if filters is not None and not filters.bypass:
            if not self.done:
                filters.on_response_body(data)
            return
        if self.done or not self.response_has_body:
            return
        self.bytes_sent += len(data)
        if self.h2 is not None:
            self.h2.send_data(data)
            if not self.downstream.writable and not self.upstream_reading_paused:
                self.on_downstream_writable(False)
            return
        if self.chunked_response:
            data = encode_chunk(data)
        head = self.pending_head
        if head is not None:
            self.pending_head = None
            data = head + data
        downstream = self.downstream
        downstream.write(data)
        if not downstream.writable and not self.upstream_reading_paused:
            self.on_downstream_writable(False)

    def on_response_trailers(self, raw: RawHeaders) -> None:
        """An HTTP/2 upstream's trailers: relayed to an HTTP/2 client with the response's end.
        An HTTP/1.1 client gets none, as from Envoy by default (its chunked body ends empty)."""
        if not self.done:
            filters = self.filters
            if filters is not None and not filters.bypass:
                if self.grpc:
                    self._charge_grpc_status(raw)
                filters.on_response_trailers(raw)
                return
            self.response_trailers = decode_headers(raw)
            if self.grpc and filters is None:
                self._charge_grpc_status(raw)

    def _charge_grpc_status(self, raw: RawHeaders) -> None:
        """As Envoy's router: a gRPC response is charged to the cluster as the HTTP status its
        grpc-status maps to (a NOT_FOUND counts under upstream_rq_4xx)."""
        code = status_in(raw)
        if code is not None:
            self.upstream_code = http_for_status(code)

    def on_read_done(self) -> None:
        if self.pending_head is not None and not self.done:
            self._flush_head()

    def _flush_head(self, tail: bytes = b"") -> None:
        head = self.pending_head
        if head is not None:
            self.pending_head = None
            self.downstream.write(head + tail)
        elif tail:
            self.downstream.write(tail)

    def on_upgraded_data(self, data: bytes) -> None:
        if not self.done:
            self.bytes_sent += len(data)
            self.downstream.write(data)

    def on_response_complete(self) -> None:
        if self.done:
            return
        filters = self.filters
        if filters is not None and not filters.bypass:
            filters.on_response_complete()
            return
        if self.h2 is not None:
            if self.response_has_body:
                self.h2.send_end(self.response_trailers)
        else:
            self._flush_head(LAST_CHUNK if self.chunked_response else b"")
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            if self.upstream_reading_paused:
                upstream.resume_reading()
            if self.request_body_sent:
                upstream.pool.release(upstream)
            else:
                # The upstream answered before taking the whole body: the connection is unusable.
                upstream.close()
        else:
            stream, self.h2_upstream = self.h2_upstream, None
            if stream is not None:
                stream.finish()
        if not self.request.complete:
            self.keep_alive = False  # the rest of the request body would be read as a new request
        self._finish()

    def on_upstream_lost(self, error: Exception | None) -> None:
        if self.done:
            return
        self.upstream = None
        self.h2_upstream = None
        if self.upgraded:
            self._finish()  # either side closing ends the tunnel
            self.downstream.close()
            return
        if self.head_sent and self.pending_head is not None:
            # The head is still held back for body bytes (the error came in the same read), so
            # nothing reached the client: the response can still become an error reply.
            self._retract_head()
        if not self.head_sent and isinstance(error, UpstreamProtocolError):
            self._add_flag(flags.UPSTREAM_PROTOCOL_ERROR)
            self._upstream_failed(502, "upstream protocol error", RESET_BEFORE_RESPONSE)
            return
        reset = isinstance(error, UpstreamReset)
        if not self.head_sent and isinstance(error, UpstreamReset):
            # An HTTP/2 stream reset: Envoy's UR, and its own words for the reason.
            self._add_flag(flags.UPSTREAM_REMOTE_RESET)
            if self.host is not None and self.host.outlier is not None:
                self.host.outlier.on_local_failure(False)
            self._upstream_failed(
                503,
                f"upstream connect error or disconnect/reset before headers. reset reason: {error}",
                REFUSED_BEFORE_RESPONSE if error.refused else RESET_BEFORE_RESPONSE,
            )
            return
        if not self.head_sent:
            self._add_flag(flags.UPSTREAM_CONNECTION_TERMINATION)
            if self.host is not None and self.host.outlier is not None:
                self.host.outlier.on_local_failure(False)
            self._upstream_failed(
                503,
                "upstream connect error or disconnect/reset before headers. "
                "reset reason: connection termination",
                RESET_BEFORE_RESPONSE,
            )
            return
        # A close-delimited body ends at the upstream's FIN, as a completed response; losing the
        # connection any other way after the head means the body was cut short: the client must
        # see a truncated message, not a complete one.
        self._add_flag(
            flags.UPSTREAM_REMOTE_RESET if reset else flags.UPSTREAM_CONNECTION_TERMINATION
        )
        self.keep_alive = False
        self._finish()
        self.downstream.abort()

    def _retract_head(self) -> None:
        self.pending_head = None
        self.head_sent = False
        self.chunked_response = False
        self.close_delimited = False
        self.response_headers = []
        self.status = 0

    # -- failures and timeouts --------------------------------------------------------------
    def _upstream_protocol_error(self) -> None:
        """The upstream's response cannot be relayed faithfully: reset it and answer 502."""
        self._add_flag(flags.UPSTREAM_PROTOCOL_ERROR)
        self._reset_upstream()
        self._upstream_failed(502, "upstream protocol error", RESET_BEFORE_RESPONSE)

    def on_route_timeout(self) -> None:
        self.route_deadline = None
        if self.done:
            return
        if self.cluster is not None:
            self.cluster.stats.upstream_rq_timeout.inc()
        host = self.host
        if host is not None:
            host.rq_timeout += 1
            if not self.head_sent:
                host.rq_error += 1
                self.upstream_code = 504
                if host.outlier is not None:
                    host.outlier.on_local_failure(True)
        self._abandon(flags.UPSTREAM_REQUEST_TIMEOUT, 504, "upstream request timeout", close=False)

    def on_stream_duration(self) -> None:
        """The cluster's max_stream_duration passed: Envoy resets the upstream stream and
        answers 408 (`UMSDR`) if nothing was sent yet."""
        self.stream_deadline = None
        if self.done:
            return
        if self.cluster is not None:
            self.cluster.stats.upstream_rq_max_duration_reached.inc()
        self._abandon(
            flags.UPSTREAM_MAX_STREAM_DURATION_REACHED,
            408,
            "upstream max stream duration reached",
            close=False,
        )

    def on_timeout(self, body: str, flag: str) -> None:
        """A connection-manager timeout (request or stream idle) fired for this exchange.

        As in Envoy, the answer is 408 while the request is still arriving and 504 once it is
        complete (the wait is then the upstream's); only the stream idle timeout sets a flag.
        """
        self._abandon(flag, 504 if self.request.complete else 408, body, close=True)

    def on_protocol_error(self, status: int, body: str) -> None:
        """The client's bytes stopped making sense mid-request: reset upstream, answer, close."""
        self._abandon(flags.DOWNSTREAM_PROTOCOL_ERROR, status, body, close=True)

    def _abandon(self, flag: str, status: int, body: str, close: bool) -> None:
        """Give up on the upstream: answer locally if nothing was sent yet, else cut the
        client off, since a response already under way cannot be turned into an error."""
        if self.done:
            return
        if flag:
            self._add_flag(flag)
        self._reset_upstream()
        if not self.head_sent:
            self.local_reply(status, body, close=close)
        else:
            self.keep_alive = False
            self._finish()
            self.downstream.abort()

    def on_downstream_lost(self, flag: str = flags.DOWNSTREAM_CONNECTION_TERMINATION) -> None:
        """The client went away: its connection closed, or (HTTP/2, `DR`) it reset the stream."""
        if self.done:
            return
        if not self.upgraded:
            self._add_flag(flag)
            self.downstream.stats.downstream_rq_rx_reset.inc()
        self._reset_upstream()
        self.keep_alive = False
        self._finish()

    def _reset_upstream(self) -> None:
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.sink = None
            upstream.abort()
        stream, self.h2_upstream = self.h2_upstream, None
        if stream is not None:
            stream.abort()

    def _rbac_admits(self, rbac: RbacConfig, request: RouteRequest) -> bool:
        """`envoy.filters.http.rbac`: a refused request is answered 403, as Envoy's filter."""
        downstream = self.downstream
        stats = downstream.listener.rbac_stats
        assert stats is not None
        transport = downstream.transport
        local = transport.get_extra_info("sockname") if transport is not None else None
        subject = Subject(
            str(local[0]) if local else "",
            int(local[1]) if local else 0,
            downstream.remote_ip,
            self.trusted_address,
            downstream.tls_facts,
            request,
        )
        details = rbac_check(rbac, stats, subject)
        if details is None:
            return True
        self.response_code_details = details
        self.local_reply(403, RBAC_DENIED_BODY)
        return False

    def _upstream_failed(self, status: int, body: str, failure: int = -1) -> None:
        """`failure`: why the attempt got no response (retry.py), or -1 if it is never retried."""
        if self.done:
            return
        if self.host is not None and not self.head_sent:
            self.host.rq_error += 1
            self.upstream_code = status
        retry = self.retry
        if retry is not None and failure >= 0 and not self.head_sent and retry.on_failure(failure):
            return
        self.local_reply(status, body)

    # -- local replies and completion -------------------------------------------------------
    def local_reply(
        self,
        status: int,
        body: str | bytes,
        close: bool = False,
        raw: bool = False,
        extra: Headers | None = None,
    ) -> None:
        if self.done or self.head_sent:
            return
        downstream = self.downstream
        hcm = downstream.hcm
        payload = body if isinstance(body, bytes) else body.encode("utf-8")
        if not raw and (self.grpc or (self.h2 is None and is_grpc(self.request.headers))):
            self._grpc_local_reply(status, payload, close)
            return
        headers: Headers = list(extra or [])
        if payload:
            headers.append(("content-length", str(len(payload))))
            headers.append(("content-type", "text/plain"))
        else:
            headers.append(("content-length", "0"))
        if self.route is not None and raw:
            headers = self.route.apply_response_headers(headers)
        headers.append(("date", _http_date()))
        headers.append(("server", hcm.server_name))
        if self.h2 is not None:
            self._h2_local_reply(self.h2, status, headers, payload)
            return
        if close or downstream.wants_close_after(self.request) or not self.request.complete:
            # An unread request body would be parsed as the next request: close instead.
            close = True
            headers.append(("connection", "close"))
        self.keep_alive = not close
        self.status = status
        self.response_headers = headers
        self.head_sent = True
        if self.request.method == "HEAD":
            payload = b""
        self.bytes_sent = len(payload)
        downstream.write(encode_response_head(status, headers) + payload)
        self._finish()

    def _grpc_local_reply(self, status: int, message: bytes, close: bool) -> None:
        """Envoy's local reply to a gRPC caller: a trailers-only response (HTTP 200, one
        HEADERS with END_STREAM) whose grpc-status is gRPC's mapping of `status`, except that
        the router's own timeouts say DEADLINE_EXCEEDED, as Envoy's router does now."""
        code = status_for_http(status)
        if status == 504 and flags.UPSTREAM_REQUEST_TIMEOUT in self.response_flags:
            code = DEADLINE_EXCEEDED
        headers: Headers = [("content-type", "application/grpc"), ("grpc-status", str(code))]
        if message:
            headers.append(("grpc-message", encode_message(message)))
        headers.append(("date", _http_date()))
        headers.append(("server", self.downstream.hcm.server_name))
        self.status = 200
        self.response_headers = headers
        self.head_sent = True
        if self.h2 is not None:
            self.h2.send_head(200, headers, True)
        else:
            downstream = self.downstream
            if close or downstream.wants_close_after(self.request) or not self.request.complete:
                close = True
                headers.append(("connection", "close"))
            self.keep_alive = not close
            headers.append(("content-length", "0"))
            downstream.write(encode_response_head(200, headers))
        self._finish()

    def _h2_local_reply(
        self, h2: H2Responder, status: int, headers: Headers, payload: bytes
    ) -> None:
        self.status = status
        self.response_headers = headers
        self.head_sent = True
        if self.request.method == "HEAD":
            payload = b""
        self.bytes_sent = len(payload)
        h2.send_head(status, headers, not payload)
        if payload:
            h2.send_data(payload)
            h2.send_end(None)
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.route_deadline = self.stream_deadline = None
        if self.retry is not None:
            self.retry.close()
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        if self.downstream_blocked:
            self.downstream_blocked = False
            self.downstream.block_reading(False)
        request = self.request
        request.body.detach()
        downstream = self.downstream
        stats = downstream.stats
        now = time.monotonic()
        duration_ms = (now - request.started_at) * 1000
        stats.downstream_rq_active.dec()
        stats.downstream_rq_completed.inc()
        stats.downstream_rq_time.record(duration_ms)
        if self.status:
            stats.response_class(self.status).inc()
        if self.upgraded:
            stats.downstream_cx_upgrades_active.dec()
        cluster = self.cluster
        host = self.host
        if cluster is not None and host is not None:
            cstats = cluster.stats
            cstats.upstream_rq_active.dec()
            host.rq_active -= 1
            if self.upstream_code:
                cstats.upstream_rq_completed.inc()
                cstats.response_class(self.upstream_code).inc()
            if self.upstream_started and self.status:
                cstats.upstream_rq_time.record((now - self.upstream_started) * 1000)
                cstats.upstream_cx_tx_bytes_total.inc(request.body.total)
                cstats.upstream_cx_rx_bytes_total.inc(self.bytes_sent)
        hcm = downstream.hcm
        if hcm.access_logs:
            record = AccessLogRecord(
                start_time=request.start_time,
                method=request.method,
                path=request.target,
                authority=self.authority,
                scheme=downstream.scheme,
                tls=downstream.tls_facts,
                response_code_details=self.response_code_details,
                protocol=f"HTTP/{request.version}",
                request_headers=self.request_headers,
                response_headers=self.response_headers,
                response_code=self.status,
                response_flags=self.response_flags or "-",
                duration_ms=duration_ms,
                upstream_host=str(host) if host is not None and self.upstream_tried else None,
                upstream_cluster=cluster.name if cluster is not None else None,
                bytes_received=request.body.total,
                bytes_sent=self.bytes_sent,
                # Envoy's downstream remote address is the trusted client address, which
                # x-forwarded-for may supply (use_remote_address, xff_num_trusted_hops).
                downstream_remote_address=(
                    downstream.remote_address
                    if self.trusted_address == downstream.remote_ip
                    else self.trusted_address
                ),
                route_name=self.route.route_name if self.route is not None else None,
            )
            for logger in hcm.access_logs:
                logger.log(record)
        if self.filters is not None:
            self.filters.finish()  # the filters' on_log, on_done and on_delete
        if not self.upgraded:
            downstream.exchange_done(self, self.keep_alive)
        elif downstream.active is self:
            downstream.active = None


def split_absolute_form(target: str) -> tuple[str, str] | None:
    """`http://host:port/path?q` -> (`host:port`, `/path?q`); None if not absolute-form."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    slash = rest.find("/")
    query = rest.find("?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    authority, path = rest[:cut], rest[cut:]
    if not authority or "@" in authority:
        return None
    if not path.startswith("/"):
        path = "/" + path
    return authority, path


def _noop() -> None:
    return None


def _without_port(authority: str) -> str:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> the host (an IPv6 one unbracketed)."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _wants_trailers(headers: Headers) -> bool:
    """Whether the client's `te` names `trailers` (passed on to an HTTP/2 upstream)."""
    return any(name == "te" and "trailers" in value.lower() for name, value in headers)


def _expects_continue(request: Request) -> bool:
    value = _header(request.headers, "expect")
    return value is not None and value.lower() == "100-continue" and request.version in ("1.1", "2")


def _apply_server_header(headers: Headers, server_name: str, mode: ServerHeader) -> None:
    if mode is ServerHeader.PASS_THROUGH:
        return
    for index, (name, _) in enumerate(headers):
        if name == "server":
            if mode is ServerHeader.APPEND_IF_ABSENT:
                return
            headers[index] = ("server", server_name)
            # Any further server fields go: the proxy's replaces all of them.
            headers[index + 1 :] = [h for h in headers[index + 1 :] if h[0] != "server"]
            return
    headers.append(("server", server_name))


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """RFC 9110 date, formatted at most once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        from email.utils import formatdate

        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]
