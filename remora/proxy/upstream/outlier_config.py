"""A cluster's `outlier_detection` compiled into an immutable `OutlierConfig`, Envoy's defaults
filled in (a value of 0 for a threshold is refused: Envoy's message says "at least 1" too)."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2

from remora.config import support
from remora.config.common import seconds
from remora.config.errors import ErrorCollector

support.register("envoy.config.cluster.v3.Cluster", {"outlier_detection"})

# field -> (low, high): every UInt32Value field remora implements (defaults: OutlierConfig).
_NUMBERS: dict[str, tuple[int, int]] = {
    "consecutive_5xx": (1, 2**32 - 1),
    "consecutive_gateway_failure": (1, 2**32 - 1),
    "consecutive_local_origin_failure": (1, 2**32 - 1),
    "max_ejection_percent": (0, 100),
    "enforcing_consecutive_5xx": (0, 100),
    "enforcing_consecutive_gateway_failure": (0, 100),
    "enforcing_consecutive_local_origin_failure": (0, 100),
    "enforcing_success_rate": (0, 100),
    "enforcing_local_origin_success_rate": (0, 100),
    "enforcing_failure_percentage": (0, 100),
    "enforcing_failure_percentage_local_origin": (0, 100),
    "success_rate_minimum_hosts": (0, 2**32 - 1),
    "success_rate_request_volume": (1, 2**32 - 1),
    "success_rate_stdev_factor": (0, 2**32 - 1),
    "failure_percentage_threshold": (0, 100),
    "failure_percentage_minimum_hosts": (0, 2**32 - 1),
    "failure_percentage_request_volume": (1, 2**32 - 1),
}
_DURATIONS = ("interval", "base_ejection_time", "max_ejection_time", "max_ejection_time_jitter")
support.register(
    "envoy.config.cluster.v3.OutlierDetection",
    {
        *_NUMBERS,
        *_DURATIONS,
        "split_external_local_origin_errors",
        "successful_active_health_check_uneject_host",
        "always_eject_one_host",
    },
)


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    consecutive_local_origin_failure: int = 5
    max_ejection_percent: int = 10
    enforcing_consecutive_5xx: int = 100
    enforcing_consecutive_gateway_failure: int = 0
    enforcing_consecutive_local_origin_failure: int = 100
    enforcing_success_rate: int = 100
    enforcing_local_origin_success_rate: int = 100
    enforcing_failure_percentage: int = 0
    enforcing_failure_percentage_local_origin: int = 0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: int = 1900  # thousandths of a standard deviation
    failure_percentage_threshold: int = 85
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_time_jitter: float = 0.0
    # Whether connect failures, resets and timeouts count apart from the upstream's own 5xx.
    split_external_local_origin_errors: bool = False
    successful_active_health_check_uneject_host: bool = True
    # max_ejection_percent is strict unless this lets a first ejection through anyway.
    always_eject_one_host: bool = False


def compile_outlier_detection(
    cluster: cluster_pb2.Cluster, path: str, errors: ErrorCollector
) -> OutlierConfig | None:
    if not cluster.HasField("outlier_detection"):
        return None
    od = cluster.outlier_detection
    od_path = f"{path}.outlier_detection"
    values: dict[str, object] = {}
    defaults = OutlierConfig()
    for field, (low, high) in _NUMBERS.items():
        value = getattr(od, field).value if od.HasField(field) else getattr(defaults, field)
        if not low <= value <= high:
            errors.add(f"{od_path}.{field}", f"must be {low} to {high}")
        values[field] = value
    for field in _DURATIONS:
        value_s = seconds(getattr(od, field)) if od.HasField(field) else getattr(defaults, field)
        if not 0 <= value_s <= 86400 * 365 or (field == "interval" and value_s == 0):
            errors.add(f"{od_path}.{field}", "must be a positive duration of at most a year")
        values[field] = value_s
    values["split_external_local_origin_errors"] = od.split_external_local_origin_errors
    values["successful_active_health_check_uneject_host"] = (
        od.successful_active_health_check_uneject_host.value
        if od.HasField("successful_active_health_check_uneject_host")
        else True
    )
    values["always_eject_one_host"] = od.always_eject_one_host.value
    return OutlierConfig(**values)  # type: ignore[arg-type]
