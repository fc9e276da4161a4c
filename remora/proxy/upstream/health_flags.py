"""A host's health as Envoy's flag set: why a host is out of balancing, not just whether.

Several sources can fail a host at once (an active health check, outlier detection, the
control plane's EDS health status) and each clears only its own flag, so a host ejected by
outlier detection stays out even when its next active check passes. Plain ints keep the test
on the balancer's rebuild path cheap.
"""

from __future__ import annotations

FAILED_ACTIVE_HC = 1
FAILED_OUTLIER_CHECK = 2
FAILED_EDS_HEALTH = 4
PENDING_ACTIVE_HC = 8  # not yet checked; set together with FAILED_ACTIVE_HC on a new host
ACTIVE_HC_TIMEOUT = 16  # the failing check timed out; set together with FAILED_ACTIVE_HC

# The flags that keep a host out of balancing.
UNAVAILABLE = FAILED_ACTIVE_HC | FAILED_OUTLIER_CHECK | FAILED_EDS_HEALTH

# In the order Envoy's /clusters prints them.
_NAMES = (
    (FAILED_ACTIVE_HC, "failed_active_hc"),
    (FAILED_OUTLIER_CHECK, "failed_outlier_check"),
    (FAILED_EDS_HEALTH, "failed_eds_health"),
    (PENDING_ACTIVE_HC, "pending_active_hc"),
    (ACTIVE_HC_TIMEOUT, "active_hc_timeout"),
)


NAMES = tuple(name for _bit, name in _NAMES)


def flag_names(flags: int) -> tuple[str, ...]:
    return tuple(name for bit, name in _NAMES if flags & bit)
