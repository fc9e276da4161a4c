"""A cluster's `lb_policy` and its per-policy config, compiled into an immutable `LbConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from envoy.config.cluster.v3 import cluster_pb2

from remora.config import support
from remora.config.errors import ErrorCollector
from remora.proxy.upstream import maglev, ring_hash

_CLUSTER = "envoy.config.cluster.v3.Cluster"
support.register(_CLUSTER, {"least_request_lb_config", "ring_hash_lb_config", "maglev_lb_config"})
support.register(f"{_CLUSTER}.LeastRequestLbConfig", {"choice_count", "active_request_bias"})
support.register("envoy.config.core.v3.RuntimeDouble", {"default_value"})
support.register_ignored(
    "envoy.config.core.v3.RuntimeDouble",
    "runtime_key",
    "remora has no runtime layer: default_value applies",
)
support.register(
    f"{_CLUSTER}.RingHashLbConfig", {"minimum_ring_size", "maximum_ring_size", "hash_function"}
)
support.register("envoy.config.cluster.v3.Cluster.MaglevLbConfig", {"table_size"})
support.register(
    f"{_CLUSTER}.CommonLbConfig", {"consistent_hashing_lb_config", "healthy_panic_threshold"}
)
support.register("envoy.type.v3.Percent", {"value"})
support.register(
    f"{_CLUSTER}.CommonLbConfig.ConsistentHashingLbConfig", {"use_hostname_for_hashing"}
)


DEFAULT_PANIC_THRESHOLD = 50.0


class LbPolicy(Enum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    RING_HASH = "RING_HASH"
    MAGLEV = "MAGLEV"

    @property
    def hashing(self) -> bool:
        """Whether picks read the request's hash key (route `hash_policy`)."""
        return self in (LbPolicy.RING_HASH, LbPolicy.MAGLEV)


@dataclass(frozen=True, slots=True)
class LbConfig:
    policy: LbPolicy = LbPolicy.ROUND_ROBIN
    choice_count: int = 2
    active_request_bias: float = 1.0
    min_ring_size: int = ring_hash.DEFAULT_MIN_RING_SIZE
    max_ring_size: int = ring_hash.DEFAULT_MAX_RING_SIZE
    table_size: int = maglev.DEFAULT_TABLE_SIZE
    use_hostname_for_hashing: bool = False
    # common_lb_config.healthy_panic_threshold: below this percentage of available hosts a
    # priority level balances over all of its hosts (Envoy's default 50; 0 disables panic).
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD


_POLICY_CONFIG = {
    "least_request_lb_config": LbPolicy.LEAST_REQUEST,
    "ring_hash_lb_config": LbPolicy.RING_HASH,
    "maglev_lb_config": LbPolicy.MAGLEV,
}


def compile_lb(cluster: cluster_pb2.Cluster, path: str, errors: ErrorCollector) -> LbConfig:
    name = cluster_pb2.Cluster.LbPolicy.Name(cluster.lb_policy)
    if name not in LbPolicy.__members__:
        errors.add(f"{path}.lb_policy", f"not supported: {path}.lb_policy ({name})")
        return LbConfig()
    policy = LbPolicy(name)
    which = cluster.WhichOneof("lb_config")
    if which in _POLICY_CONFIG and _POLICY_CONFIG[which] is not policy:
        # Envoy ignores the block; a config that sets one for another policy is a mistake.
        errors.add(f"{path}.{which}", f"set, but lb_policy is {name}")
    choice_count = 2
    bias = 1.0
    lr = cluster.least_request_lb_config
    if lr.HasField("choice_count"):
        choice_count = lr.choice_count.value
        if choice_count < 2:
            errors.add(f"{path}.least_request_lb_config.choice_count", "must be at least 2")
    if lr.HasField("active_request_bias"):
        bias = lr.active_request_bias.default_value
        if not 0.0 <= bias <= 1e6:  # NaN fails both
            errors.add(
                f"{path}.least_request_lb_config.active_request_bias.default_value",
                "must be a number from 0",
            )
    rh = cluster.ring_hash_lb_config
    rh_path = f"{path}.ring_hash_lb_config"
    min_ring = rh.minimum_ring_size.value if rh.HasField("minimum_ring_size") else None
    max_ring = rh.maximum_ring_size.value if rh.HasField("maximum_ring_size") else None
    for field, value in (("minimum_ring_size", min_ring), ("maximum_ring_size", max_ring)):
        if value is not None and not 1 <= value <= ring_hash.LIMIT_RING_SIZE:
            errors.add(f"{rh_path}.{field}", f"must be 1 to {ring_hash.LIMIT_RING_SIZE}")
    min_ring = min_ring or ring_hash.DEFAULT_MIN_RING_SIZE
    if max_ring is None:
        max_ring = max(ring_hash.DEFAULT_MAX_RING_SIZE, min_ring)
    elif min_ring > max_ring:
        errors.add(
            f"{rh_path}.minimum_ring_size",
            f"{min_ring} is larger than maximum_ring_size ({max_ring})",
        )
    if rh.hash_function != cluster_pb2.Cluster.RingHashLbConfig.XX_HASH:
        function = cluster_pb2.Cluster.RingHashLbConfig.HashFunction.Name(rh.hash_function)
        errors.add(
            f"{rh_path}.hash_function",
            f"not supported: {rh_path}.hash_function ({function}; only XX_HASH)",
        )
    table_size = maglev.DEFAULT_TABLE_SIZE
    if cluster.maglev_lb_config.HasField("table_size"):
        table_size = cluster.maglev_lb_config.table_size.value
        if table_size > maglev.MAX_TABLE_SIZE or not maglev.is_prime(table_size):
            errors.add(
                f"{path}.maglev_lb_config.table_size",
                f"must be a prime number no larger than {maglev.MAX_TABLE_SIZE}, got {table_size}",
            )
    panic_threshold = DEFAULT_PANIC_THRESHOLD
    if cluster.common_lb_config.HasField("healthy_panic_threshold"):
        panic_threshold = cluster.common_lb_config.healthy_panic_threshold.value
        if not 0.0 <= panic_threshold <= 100.0:  # NaN fails both
            errors.add(
                f"{path}.common_lb_config.healthy_panic_threshold.value",
                "must be a percentage from 0 to 100",
            )
    return LbConfig(
        policy=policy,
        panic_threshold=panic_threshold,
        choice_count=choice_count,
        active_request_bias=bias,
        min_ring_size=min_ring,
        max_ring_size=max_ring,
        table_size=table_size,
        use_hostname_for_hashing=(
            cluster.common_lb_config.consistent_hashing_lb_config.use_hostname_for_hashing
        ),
    )
