"""The RBAC filter's decision for one request or connection, and its stats."""

from __future__ import annotations

from dataclasses import dataclass

from remora.proxy.rbac.policy import Rules, Subject
from remora.proxy.stats import Store

DENIED_BODY = "RBAC: access denied"


@dataclass(frozen=True, slots=True)
class RbacConfig:
    rules: Rules | None
    shadow: Rules | None
    rules_stat_prefix: str = ""
    shadow_stat_prefix: str = ""


class RbacStats:
    """Envoy's `<scope>rbac.[<prefix>]allowed|denied` and the shadow pair."""

    __slots__ = ("allowed", "denied", "shadow_allowed", "shadow_denied")

    def __init__(self, store: Store, scope: str, config: RbacConfig) -> None:
        base = f"{scope}rbac.{config.rules_stat_prefix}"
        shadow = f"{scope}rbac.{config.shadow_stat_prefix}"
        self.allowed = store.counter(f"{base}allowed")
        self.denied = store.counter(f"{base}denied")
        self.shadow_allowed = store.counter(f"{shadow}shadow_allowed")
        self.shadow_denied = store.counter(f"{shadow}shadow_denied")


def check(config: RbacConfig, stats: RbacStats, subject: Subject) -> str | None:
    """None to let it through, else Envoy's response code details for the refusal."""
    if config.shadow is not None:
        allowed, _ = config.shadow.decide(subject)
        (stats.shadow_allowed if allowed else stats.shadow_denied).inc()
    if config.rules is None:
        return None
    allowed, policy = config.rules.decide(subject)
    if allowed:
        stats.allowed.inc()
        return None
    stats.denied.inc()
    return f"rbac_access_denied_matched_policy[{policy or 'none'}]"
