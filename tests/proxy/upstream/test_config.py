"""Circuit-breaker retry limits, as a cluster's compile sees them."""

from __future__ import annotations

from typing import Any

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.upstream.config import ClusterConfig
from tests.proxy.harness import cluster


def _cluster(*thresholds: dict[str, Any]) -> ClusterConfig:
    extra = {"circuit_breakers": {"thresholds": list(thresholds)}} if thresholds else {}
    config = compile_bootstrap(
        parse_dict({"static_resources": {"clusters": [cluster("c", [1], **extra)]}})
    )
    return config.clusters["c"]


def test_retry_limits_default_to_envoys() -> None:
    config = _cluster()
    assert (config.max_retries, config.retry_budget) == (3, None)


def test_max_retries_and_the_budget_are_read() -> None:
    assert _cluster({"max_retries": 9}).max_retries == 9
    assert _cluster({"retry_budget": {}}).retry_budget == (20.0, 3)
    budget = _cluster(
        {"retry_budget": {"budget_percent": {"value": 12.5}, "min_retry_concurrency": 1}}
    )
    assert budget.retry_budget == (12.5, 1)


def test_a_budget_over_100_percent_is_refused_by_path() -> None:
    with pytest.raises(ConfigErrors) as info:
        _cluster({"retry_budget": {"budget_percent": {"value": 120}}})
    assert [str(e) for e in info.value.errors] == [
        "static_resources.clusters[0].circuit_breakers.thresholds[0].retry_budget.budget_percent:"
        " must be between 0 and 100"
    ]


def test_unimplemented_threshold_fields_are_refused_by_path() -> None:
    with pytest.raises(ConfigErrors) as info:
        _cluster({"max_retries": 1, "track_remaining": True})
    assert [e.path for e in info.value.errors] == [
        "static_resources.clusters[0].circuit_breakers.thresholds[0].track_remaining"
    ]
