from __future__ import annotations

import pytest

from remora.proxy.admin.context import (
    AdminContext,
    CircuitBreakerThresholds,
    HostStatus,
)

from .support import StaticContext


def test_test_context_satisfies_the_protocol() -> None:
    # Checked by mypy --strict on this file: a structural mismatch is a type error here.
    context: AdminContext = StaticContext()
    assert context.stats is context.stats


def test_host_status_rejects_unknown_flags_naming_the_host() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.1:80.*bogus"):
        HostStatus("10.0.0.1", 80, False, health_flags=("bogus",))


def test_host_status_rejects_bad_port() -> None:
    with pytest.raises(ValueError, match="port out of range"):
        HostStatus("10.0.0.1", 70000, True)


def test_circuit_breaker_priority_checked() -> None:
    with pytest.raises(ValueError, match="priority"):
        CircuitBreakerThresholds("urgent", 1, 1, 1, 1)


def test_records_are_frozen() -> None:
    host = HostStatus("10.0.0.1", 80, True)
    with pytest.raises(AttributeError):
        host.port = 81  # type: ignore[misc]
