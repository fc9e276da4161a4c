"""lb_policy and its per-policy config, as a cluster's compile sees them."""

from __future__ import annotations

from typing import Any

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from remora.proxy.upstream.lb_config import LbConfig, LbPolicy
from tests.proxy.harness import cluster


def _lb(**extra: Any) -> LbConfig:
    config = compile_bootstrap(
        parse_dict({"static_resources": {"clusters": [cluster("c", [1], **extra)]}})
    )
    return config.clusters["c"].lb


def _errors(**extra: Any) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        _lb(**extra)
    return [str(error) for error in info.value.errors]


def test_defaults_are_envoys() -> None:
    assert _lb() == LbConfig()
    lr = _lb(lb_policy="LEAST_REQUEST")
    assert (lr.policy, lr.choice_count, lr.active_request_bias) == (LbPolicy.LEAST_REQUEST, 2, 1.0)
    ring = _lb(lb_policy="RING_HASH")
    assert (ring.min_ring_size, ring.max_ring_size) == (1024, 1024 * 1024)
    assert _lb(lb_policy="MAGLEV").table_size == 65537
    assert _lb(lb_policy="RANDOM").policy is LbPolicy.RANDOM


def test_policy_settings_are_read() -> None:
    lr = _lb(
        lb_policy="LEAST_REQUEST",
        least_request_lb_config={"choice_count": 5, "active_request_bias": {
            "default_value": 0.5, "runtime_key": "k"}},
    )  # fmt: skip
    assert (lr.choice_count, lr.active_request_bias) == (5, 0.5)
    ring = _lb(
        lb_policy="RING_HASH",
        ring_hash_lb_config={"minimum_ring_size": 64, "maximum_ring_size": 8388608},
        common_lb_config={"consistent_hashing_lb_config": {"use_hostname_for_hashing": True}},
    )
    assert (ring.min_ring_size, ring.max_ring_size, ring.use_hostname_for_hashing) == (
        64, 8388608, True)  # fmt: skip
    assert _lb(lb_policy="MAGLEV", maglev_lb_config={"table_size": 251}).table_size == 251


def test_bad_settings_name_their_field() -> None:
    path = "static_resources.clusters[0]"
    assert _errors(lb_policy="MAGLEV", maglev_lb_config={"table_size": 1000}) == [
        f"{path}.maglev_lb_config.table_size: must be a prime number no larger than 5000011, "
        "got 1000"
    ]
    assert _errors(lb_policy="LEAST_REQUEST", least_request_lb_config={"choice_count": 1}) == [
        f"{path}.least_request_lb_config.choice_count: must be at least 2"
    ]
    ring = _errors(
        lb_policy="RING_HASH",
        ring_hash_lb_config={"minimum_ring_size": 4096, "maximum_ring_size": 1024},
    )
    assert ring == [
        f"{path}.ring_hash_lb_config.minimum_ring_size: 4096 is larger than "
        "maximum_ring_size (1024)"
    ]
    [murmur] = _errors(
        lb_policy="RING_HASH", ring_hash_lb_config={"hash_function": "MURMUR_HASH_2"}
    )
    assert "not supported" in murmur and "MURMUR_HASH_2" in murmur
    assert _errors(lb_policy="ROUND_ROBIN", ring_hash_lb_config={}) == [
        f"{path}.ring_hash_lb_config: set, but lb_policy is ROUND_ROBIN"
    ]
    [provided] = _errors(lb_policy="CLUSTER_PROVIDED")
    assert provided == f"not supported: {path}.lb_policy (CLUSTER_PROVIDED)"
    [slow] = _errors(lb_policy="LEAST_REQUEST", least_request_lb_config={"slow_start_config": {}})
    assert "slow_start_config" in slow and "not supported" in slow
