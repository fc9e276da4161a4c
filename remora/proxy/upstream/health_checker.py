"""Active health checks on asyncio: one task per host, probing over HTTP/1.1 or TCP.

The decisions (thresholds, intervals, what a status means) live in `health_check.py`; this
module only connects, sends, reads and times out. An HTTP check keeps its connection between
checks unless `reuse_connection` is false or the host closes it; a TCP check connects afresh
each time. Health changes reach balancing through `Cluster.health_changed`, which rebuilds the
balancer; nothing here runs per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httptools

from remora.proxy.stats import Counter, Gauge, Store
from remora.proxy.stats.group import resolve_group
from remora.proxy.tls.layer import open_stream
from remora.proxy.upstream.health_check import (
    CheckState,
    Outcome,
    Transition,
    contains_in_order,
    next_interval,
    status_outcome,
)
from remora.proxy.upstream.health_check_config import HealthCheckConfig, HttpCheck, TcpCheck
from remora.proxy.upstream.health_flags import (
    ACTIVE_HC_TIMEOUT,
    FAILED_ACTIVE_HC,
    PENDING_ACTIVE_HC,
)

if TYPE_CHECKING:
    from remora.proxy.upstream.cluster import Cluster, Host

log = logging.getLogger("remora.health")

_READ_LIMIT = 64 * 1024  # a TCP check's receive buffer; an HTTP check discards bodies


@dataclass(slots=True)
class HealthCheckStats:
    """Envoy's `cluster.<name>.health_check.*`."""

    attempt: Counter
    success: Counter
    failure: Counter
    network_failure: Counter
    healthy: Gauge

    @classmethod
    def create(cls, store: Store, cluster: str) -> HealthCheckStats:
        return resolve_group(cls, store, f"cluster.{cluster}.health_check.")


class _Failed(Exception):
    """A check that failed on the network (no connection, reset, early close)."""


class _Response:
    """httptools callbacks. Status and keep-alive are read when the head ends: once the
    message is complete the parser has reset and reports neither."""

    __slots__ = ("complete", "head_only", "keep_alive", "parser", "status")

    def __init__(self, head_only: bool = False) -> None:
        self.status = 0
        self.keep_alive = False
        self.complete = False
        self.head_only = head_only  # a HEAD response has no body, whatever its length says
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only:
            self.complete = True

    def on_message_complete(self) -> None:
        self.complete = True


class _Stale(Exception):
    """A kept-alive connection the host had closed: the check is asked again on a new one."""


class _HttpConnection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False  # has carried a whole check: a close before the next is not a failure

    @classmethod
    async def open(cls, host: Host, cluster: Cluster) -> _HttpConnection:
        reader, writer = await open_stream(
            host.address, host.port, cluster.config.tls, cluster.tls_stats, cluster.where
        )
        return cls(reader, writer)

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class HealthChecker:
    def __init__(self, cluster: Cluster, config: HealthCheckConfig, store: Store) -> None:
        self.cluster = cluster
        self.config = config
        self.stats = HealthCheckStats.create(store, cluster.name)
        self._states: dict[Host, CheckState] = {}
        self._tasks: dict[Host, asyncio.Task[None]] = {}
        self._first: dict[Host, asyncio.Event] = {}
        self._running = False
        self._random = random.random

    def sync(self, hosts: list[Host]) -> None:
        """The cluster's host set changed: new hosts start failed and pending their first
        check (as in Envoy); removed ones stop being checked."""
        current = set(hosts)
        for host in hosts:
            if host not in self._states:
                self._states[host] = CheckState()
                self._first[host] = asyncio.Event()
                host.health_flags |= FAILED_ACTIVE_HC | PENDING_ACTIVE_HC
                if self._running:
                    self._spawn(host)
        for host in [h for h in self._states if h not in current]:
            del self._states[host]
            del self._first[host]
            task = self._tasks.pop(host, None)
            if task is not None:
                task.cancel()
        self._count_healthy()

    async def start(self) -> None:
        """Check every host once before the cluster serves, as Envoy's cluster warming does,
        bounded by the check timeout and initial jitter."""
        self._running = True
        for host in self._states:
            self._spawn(host)
        waits = [event.wait() for event in self._first.values()]
        if waits:
            bound = self.config.timeout + self.config.initial_jitter + 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), bound)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, host: Host) -> None:
        self._tasks[host] = asyncio.create_task(
            self._run(host), name=f"health:{self.cluster.name}:{host}"
        )

    async def _run(self, host: Host) -> None:
        config = self.config
        state = self._states[host]
        connection: _HttpConnection | None = None
        try:
            if config.initial_jitter:
                await asyncio.sleep(self._random() * config.initial_jitter)
            while True:
                self.stats.attempt.inc()
                outcome, reason, timed_out, network = Outcome.PASS, "", False, False
                try:
                    async with asyncio.timeout(config.timeout):
                        if isinstance(config.probe, HttpCheck):
                            connection, outcome, reason = await self._http(
                                host, config.probe, connection
                            )
                        else:
                            await self._tcp(host, config.probe)
                except TimeoutError:
                    outcome, reason, timed_out, network = Outcome.FAIL, "timed out", True, True
                except (OSError, _Failed, httptools.HttpParserError) as exc:
                    outcome, reason, network = Outcome.FAIL, str(exc) or type(exc).__name__, True
                except Exception as exc:  # a check must never die and freeze the host's state
                    log.exception("health check: cluster %s host %s", self.cluster.name, host)
                    outcome, reason, network = Outcome.FAIL, type(exc).__name__, True
                if network and connection is not None:  # a status keeps the connection
                    connection.close()
                    connection = None
                transition = self._record(host, state, outcome, reason, timed_out, network)
                await asyncio.sleep(
                    next_interval(
                        config,
                        state.healthy,
                        transition,
                        self.cluster.stats.upstream_cx_total.value > 0,
                        self._random,
                    )
                )
        finally:
            if connection is not None:
                connection.close()

    def _record(
        self,
        host: Host,
        state: CheckState,
        outcome: Outcome,
        reason: str,
        timed_out: bool,
        network: bool,
    ) -> Transition:
        if outcome is Outcome.PASS:
            self.stats.success.inc()
        else:
            self.stats.failure.inc()
            if network:
                self.stats.network_failure.inc()
        transition = state.record(outcome, self.config)
        flags = host.health_flags & ~PENDING_ACTIVE_HC
        if not state.healthy and outcome is not Outcome.PASS:
            # A failed host says whether its latest check timed out.
            flags = flags | ACTIVE_HC_TIMEOUT if timed_out else flags & ~ACTIVE_HC_TIMEOUT
        if transition is Transition.TO_HEALTHY:
            flags &= ~(FAILED_ACTIVE_HC | ACTIVE_HC_TIMEOUT)
            log.info("health check: cluster %s host %s is healthy", self.cluster.name, host)
        elif transition is Transition.TO_UNHEALTHY:
            flags |= FAILED_ACTIVE_HC
            log.warning(
                "health check: cluster %s host %s is unhealthy: %s", self.cluster.name, host, reason
            )
        elif outcome is not Outcome.PASS and self.config.log_failures:
            log.info("health check: cluster %s host %s failed: %s", self.cluster.name, host, reason)
        elif outcome is Outcome.PASS and self.config.log_successes:
            log.info("health check: cluster %s host %s passed", self.cluster.name, host)
        changed = flags != host.health_flags
        host.health_flags = flags
        detector = self.cluster.outlier_detector
        if (
            outcome is Outcome.PASS
            and detector is not None
            and detector.config.successful_active_health_check_uneject_host
            and host.outlier is not None
        ):
            changed |= detector.uneject(host.outlier)
        self._first[host].set()
        if changed:
            self._count_healthy()
            self.cluster.health_changed()
        return transition

    def _count_healthy(self) -> None:
        self.stats.healthy.set(sum(1 for s in self._states.values() if s.healthy))

    async def _http(
        self, host: Host, check: HttpCheck, connection: _HttpConnection | None
    ) -> tuple[_HttpConnection | None, Outcome, str]:
        reused = connection is not None and connection.usable()
        if connection is not None and not reused:
            connection.close()
        if connection is None or not reused:
            connection = await _HttpConnection.open(host, self.cluster)
        try:
            response = await self._exchange(connection, check)
        except _Stale:
            # The host closed the kept-alive connection between checks (its keep-alive timeout
            # is shorter than the interval): not a failure, as in Envoy; ask on a new one.
            connection.close()
            connection = await _HttpConnection.open(host, self.cluster)
            response = await self._exchange(connection, check)
        status = response.status
        outcome = status_outcome(status, check)
        if not response.keep_alive or not self.config.reuse_connection:
            connection.close()
            connection = None
        return connection, outcome, "" if outcome is Outcome.PASS else f"status {status}"

    async def _exchange(self, connection: _HttpConnection, check: HttpCheck) -> _Response:
        connection.writer.write(check.request_head)
        response = _Response(head_only=check.request_head.startswith(b"HEAD "))
        first = True
        while not response.complete:
            try:
                data = await connection.reader.read(_READ_LIMIT)
            except (ConnectionResetError, BrokenPipeError):
                if first and connection.used:
                    raise _Stale from None  # it closed as the request went out
                raise
            if not data:
                if first and connection.used:
                    raise _Stale
                raise _Failed("connection closed before a complete response")
            first = False
            response.parser.feed_data(data)
        connection.used = True
        return response

    async def _tcp(self, host: Host, check: TcpCheck) -> None:
        cluster = self.cluster
        reader, writer = await open_stream(
            host.address, host.port, cluster.config.tls, cluster.tls_stats, cluster.where
        )
        try:
            if check.send:
                writer.write(check.send)
                await writer.drain()
            data = b""
            while not contains_in_order(data, check.receive):
                chunk = await reader.read(_READ_LIMIT)
                if not chunk:
                    raise _Failed("connection closed before the expected payload")
                data = (data + chunk)[-_READ_LIMIT:]
        finally:
            writer.close()
