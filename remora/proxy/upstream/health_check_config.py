"""A cluster's `health_checks` entry compiled into an immutable `HealthCheckConfig`.

HTTP and TCP checks are implemented; gRPC checks wait for HTTP/2 upstreams and are refused by
path, as are custom checks, TLS options and event logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.type.v3 import range_pb2

from remora.config import support
from remora.config.common import seconds
from remora.config.errors import ErrorCollector

support.register("envoy.config.cluster.v3.Cluster", {"health_checks"})
support.register(
    "envoy.config.core.v3.HealthCheck",
    {
        "timeout",
        "interval",
        "initial_jitter",
        "interval_jitter",
        "interval_jitter_percent",
        "unhealthy_threshold",
        "healthy_threshold",
        "reuse_connection",
        "http_health_check",
        "tcp_health_check",
        "no_traffic_interval",
        "no_traffic_healthy_interval",
        "unhealthy_interval",
        "unhealthy_edge_interval",
        "healthy_edge_interval",
        "always_log_health_check_failures",
        "always_log_health_check_success",
    },
)
support.register(
    "envoy.config.core.v3.HealthCheck.HttpHealthCheck",
    {"host", "path", "request_headers_to_add", "expected_statuses", "retriable_statuses", "method"},
)
support.register("envoy.config.core.v3.HealthCheck.TcpHealthCheck", {"send", "receive"})
support.register("envoy.config.core.v3.HealthCheck.Payload", {"text", "binary"})
support.register("envoy.type.v3.Int64Range", {"start", "end"})

DEFAULT_NO_TRAFFIC_INTERVAL = 60.0  # Envoy's: a cluster that never had traffic is checked slowly
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHODS = {"METHOD_UNSPECIFIED": "GET", "GET": "GET", "HEAD": "HEAD", "POST": "POST",
            "PUT": "PUT", "DELETE": "DELETE", "OPTIONS": "OPTIONS", "TRACE": "TRACE",
            "PATCH": "PATCH"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """The request head sent (its Host is the check's `host` or the cluster's name), and the
    statuses that pass or, failing, count toward the threshold ([start, end) ranges); any
    other status fails the host at once, as in Envoy."""

    request_head: bytes
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 201),)
    retriable_statuses: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class TcpCheck:
    """Bytes sent after connecting, and blocks that must all arrive, in order (not
    necessarily next to each other); neither set is a connect-only check."""

    send: bytes = b""
    receive: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    probe: HttpCheck | TcpCheck
    timeout: float
    interval: float
    unhealthy_threshold: int
    healthy_threshold: int
    initial_jitter: float = 0.0
    interval_jitter: float = 0.0
    interval_jitter_percent: int = 0
    no_traffic_interval: float = DEFAULT_NO_TRAFFIC_INTERVAL
    no_traffic_healthy_interval: float | None = None  # unset: no_traffic_interval
    unhealthy_interval: float | None = None  # unset: interval
    unhealthy_edge_interval: float | None = None  # unset: unhealthy_interval
    healthy_edge_interval: float | None = None  # unset: interval
    reuse_connection: bool = True
    log_failures: bool = False
    log_successes: bool = False


def compile_health_checks(
    cluster: cluster_pb2.Cluster, path: str, errors: ErrorCollector
) -> HealthCheckConfig | None:
    if not cluster.health_checks:
        return None
    if len(cluster.health_checks) > 1:
        errors.add(f"{path}.health_checks", "not supported: more than one health check a cluster")
    return _compile(cluster.health_checks[0], cluster.name, f"{path}.health_checks[0]", errors)


def _compile(
    check: health_check_pb2.HealthCheck, cluster_name: str, path: str, errors: ErrorCollector
) -> HealthCheckConfig | None:
    before = len(errors.errors)

    def duration(field: str, required: bool = False) -> float | None:
        if not check.HasField(field):
            if required:
                errors.add(f"{path}.{field}", "required")
            return None
        value = seconds(getattr(check, field))
        if not 0 < value <= 86400 * 365:
            errors.add(f"{path}.{field}", "must be more than 0 and at most a year")
        return value

    def threshold(field: str) -> int:
        if not check.HasField(field):
            errors.add(f"{path}.{field}", "required")
            return 1
        value: int = getattr(check, field).value
        if value < 1:
            errors.add(f"{path}.{field}", "must be at least 1")
        return value

    timeout = duration("timeout", required=True) or 1.0
    interval = duration("interval", required=True) or 1.0
    if check.HasField("initial_jitter") and seconds(check.initial_jitter) < 0:
        errors.add(f"{path}.initial_jitter", "must not be negative")
    if check.HasField("interval_jitter") and seconds(check.interval_jitter) < 0:
        errors.add(f"{path}.interval_jitter", "must not be negative")
    unhealthy = threshold("unhealthy_threshold")
    healthy = threshold("healthy_threshold")
    which = check.WhichOneof("health_checker")
    if which not in ("http_health_check", "tcp_health_check"):
        if which is None:
            errors.add(path, "needs http_health_check or tcp_health_check")
        else:
            errors.add(f"{path}.{which}", f"not supported: {path}.{which}")
        return None
    reuse = check.reuse_connection.value if check.HasField("reuse_connection") else True
    probe: HttpCheck | TcpCheck
    if which == "http_health_check":
        probe = _http(check.http_health_check, cluster_name, reuse, f"{path}.{which}", errors)
    else:
        probe = _tcp(check.tcp_health_check, f"{path}.{which}", errors)
    if len(errors.errors) > before:
        return None
    return HealthCheckConfig(
        probe=probe,
        timeout=timeout,
        interval=interval,
        unhealthy_threshold=unhealthy,
        healthy_threshold=healthy,
        initial_jitter=seconds(check.initial_jitter) if check.HasField("initial_jitter") else 0.0,
        interval_jitter=(
            seconds(check.interval_jitter) if check.HasField("interval_jitter") else 0.0
        ),
        interval_jitter_percent=check.interval_jitter_percent,
        no_traffic_interval=duration("no_traffic_interval") or DEFAULT_NO_TRAFFIC_INTERVAL,
        no_traffic_healthy_interval=duration("no_traffic_healthy_interval"),
        unhealthy_interval=duration("unhealthy_interval"),
        unhealthy_edge_interval=duration("unhealthy_edge_interval"),
        healthy_edge_interval=duration("healthy_edge_interval"),
        reuse_connection=reuse,
        log_failures=check.always_log_health_check_failures,
        log_successes=check.always_log_health_check_success,
    )


def _http(
    http: health_check_pb2.HealthCheck.HttpHealthCheck,
    cluster_name: str,
    reuse_connection: bool,
    path: str,
    errors: ErrorCollector,
) -> HttpCheck:
    target = http.path
    if not target.startswith("/") or any(c in target for c in " \r\n\t\0"):
        errors.add(f"{path}.path", "must start with / and hold no spaces or control characters")
    host = http.host or cluster_name
    if any(c in host for c in " \r\n\t\0/"):
        errors.add(f"{path}.host", "must be a host name (no spaces, control characters or /)")
    method = base_pb2.RequestMethod.Name(http.method)
    if method not in _METHODS:
        errors.add(f"{path}.method", f"not supported: {path}.method ({method})")
    lines = [f"{_METHODS.get(method, 'GET')} {target} HTTP/1.1", f"host: {host}",
             "user-agent: Envoy/HC"]  # fmt: skip
    for i, option in enumerate(http.request_headers_to_add):
        name, value = option.header.key, option.header.value
        if not _TOKEN.match(name.encode()) or name.lower() in ("host", "content-length"):
            errors.add(
                f"{path}.request_headers_to_add[{i}].header.key",
                "must be a header name other than host and content-length",
            )
        if any(c in value for c in "\r\n\0"):
            errors.add(f"{path}.request_headers_to_add[{i}].header.value", "holds a line break")
        lines.append(f"{name}: {value}")
    if not reuse_connection:
        lines.append("connection: close")
    return HttpCheck(
        request_head=("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace"),
        expected_statuses=_ranges(http.expected_statuses, f"{path}.expected_statuses", errors)
        or ((200, 201),),
        retriable_statuses=_ranges(http.retriable_statuses, f"{path}.retriable_statuses", errors),
    )


def _ranges(
    ranges: Iterable[range_pb2.Int64Range], path: str, errors: ErrorCollector
) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, r in enumerate(ranges):
        if not 100 <= r.start < r.end <= 600:
            errors.add(f"{path}[{i}]", "must be a range [start, end) within 100-600")
        out.append((r.start, r.end))
    return tuple(out)


def _tcp(
    tcp: health_check_pb2.HealthCheck.TcpHealthCheck, path: str, errors: ErrorCollector
) -> TcpCheck:
    send = _payload(tcp.send, f"{path}.send", errors) if tcp.HasField("send") else b""
    receive = tuple(_payload(p, f"{path}.receive[{i}]", errors) for i, p in enumerate(tcp.receive))
    if any(not block for block in receive):
        errors.add(f"{path}.receive", "a payload must not be empty")
    return TcpCheck(send, receive)


def _payload(
    payload: health_check_pb2.HealthCheck.Payload, path: str, errors: ErrorCollector
) -> bytes:
    if payload.WhichOneof("payload") == "binary":
        return bytes(payload.binary)
    try:
        return bytes.fromhex(payload.text)
    except ValueError:
        errors.add(f"{path}.text", "must be hex digits (two a byte)")
        return b""
