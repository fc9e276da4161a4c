"""RetryPolicy proto (RouteAction.retry_policy, VirtualHost.retry_policy) -> retry.RetryPolicy.

Config time only: the run-time type and the decider live in remora/proxy/http/retry.py, which the
data path imports without pulling in protobuf. A retry_on token Envoy does not know is a typo and
is refused as such; one Envoy knows but remora does not implement is refused as unsupported, so a
config never silently retries less than it says.
"""

from __future__ import annotations

from dataclasses import replace

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2

from remora.config import support
from remora.config.errors import ErrorCollector
from remora.proxy.http.route.actions import duration_seconds
from remora.proxy.http.route.matchers import HeaderMatch, compile_header_matcher
from remora.proxy.http.route.retry_rules import (
    DEFAULT_BASE_INTERVAL,
    ENVOY_ONLY_TOKENS,
    RetryPolicy,
    parse_retry_on,
    present_matcher,
)

_ROUTE = "envoy.config.route.v3"
_PREVIOUS_HOSTS = previous_hosts_pb2.PreviousHostsPredicate.DESCRIPTOR.full_name

support.register(
    f"{_ROUTE}.RetryPolicy",
    {
        "retry_on",
        "num_retries",
        "per_try_timeout",
        "retry_back_off",
        "retriable_status_codes",
        "retriable_headers",
        "retry_host_predicate",
        "host_selection_retry_max_attempts",
    },
)
support.register(f"{_ROUTE}.RetryPolicy.RetryBackOff", {"base_interval", "max_interval"})
support.register(f"{_ROUTE}.RetryPolicy.RetryHostPredicate", {"name", "typed_config"})
support.register(_PREVIOUS_HOSTS, set())


def compile_retry_policy(
    message: rc_pb2.RetryPolicy | None,
    path: str,
    errors: ErrorCollector,
    *,
    attempt_count_header: bool = False,
    buffer_limit: int | None = None,
) -> RetryPolicy | None:
    """None when there is nothing to do per request: no policy and no attempt-count header."""
    if message is None:
        if not attempt_count_header:
            return None
        # No retries, but the attempt-count header still goes upstream (always "1").
        return RetryPolicy(num_retries=0, attempt_count_header=True, buffer_limit=buffer_limit)
    before = len(errors.errors)
    retry_on, unknown = parse_retry_on(message.retry_on)
    for token in unknown:
        if token in ENVOY_ONLY_TOKENS:
            errors.add(f"{path}.retry_on", f"not supported: {path}.retry_on ({token!r})")
        else:
            errors.add(f"{path}.retry_on", f"unknown retry_on condition {token!r}")
    num_retries = message.num_retries.value if message.HasField("num_retries") else 1
    per_try: float | None = None
    if message.HasField("per_try_timeout"):
        seconds = duration_seconds(message.per_try_timeout)
        if seconds < 0:
            errors.add(f"{path}.per_try_timeout", "must not be negative")
        per_try = seconds or None  # zero: no per-try timeout, as in Envoy
    base, maximum = DEFAULT_BASE_INTERVAL, 10 * DEFAULT_BASE_INTERVAL
    if message.HasField("retry_back_off"):
        back_off = message.retry_back_off
        bpath = f"{path}.retry_back_off"
        if not back_off.HasField("base_interval"):
            errors.add(f"{bpath}.base_interval", "is required")
        else:
            base = duration_seconds(back_off.base_interval)
            if base <= 0:
                errors.add(f"{bpath}.base_interval", "must be greater than 0")
        maximum = 10 * base
        if back_off.HasField("max_interval"):
            maximum = duration_seconds(back_off.max_interval)
            if maximum <= 0:
                errors.add(f"{bpath}.max_interval", "must be greater than 0")
            elif maximum < base:
                errors.add(
                    f"{bpath}.max_interval", "must be greater than or equal to base_interval"
                )
    headers: list[HeaderMatch] = []
    for i, header in enumerate(message.retriable_headers):
        compiled = compile_header_matcher(header, f"{path}.retriable_headers[{i}]", errors)
        if compiled is None:
            continue
        if compiled.name == ":status":
            # A response's status is matched as a field: the decider passes it as `:status`.
            compiled = replace(compiled, source=present_matcher(":status").source)
        headers.append(compiled)
    previous_hosts = False
    for i, predicate in enumerate(message.retry_host_predicate):
        ppath = f"{path}.retry_host_predicate[{i}]"
        # The support walker has refused any other typed_config already.
        if not predicate.typed_config.Is(previous_hosts_pb2.PreviousHostsPredicate.DESCRIPTOR):
            errors.add(ppath, f"not supported: {ppath} (only {_PREVIOUS_HOSTS})")
            continue
        previous_hosts = True
    attempts = message.host_selection_retry_max_attempts
    if attempts < 0:
        errors.add(f"{path}.host_selection_retry_max_attempts", "must not be negative")
    if len(errors.errors) != before:
        return None
    return RetryPolicy(
        retry_on=retry_on,
        num_retries=num_retries,
        per_try_timeout=per_try,
        base_interval=base,
        max_interval=maximum,
        retriable_status_codes=frozenset(message.retriable_status_codes),
        retriable_headers=tuple(headers),
        previous_hosts=previous_hosts,
        # Envoy documents an unset value as one re-pick.
        host_selection_attempts=attempts or 1,
        buffer_limit=buffer_limit,
        attempt_count_header=attempt_count_header,
    )
