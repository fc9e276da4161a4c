"""What clients rejected, and why: the memory that stops a NACKed version from being re-pushed.

A NACK is remembered per node group, type and version. Versions are content hashes, so a rejected
config is only ever sent again once it has changed; go-control-plane, by contrast, resends a
rejected snapshot forever.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger("remora.xds.nack")

_KEEP = 256  # most recent NACKs kept for the admin endpoint


@dataclass(frozen=True, slots=True)
class Nack:
    node_id: str
    group: str
    type_url: str
    version: str  # the version (or resource@version in delta) that was rejected
    last_good: str  # the version the client keeps serving
    reason: str
    at: float

    def as_dict(self) -> dict[str, object]:
        return {
            "node": self.node_id,
            "group": self.group,
            "type_url": self.type_url,
            "rejected_version": self.version,
            "last_good_version": self.last_good,
            "reason": self.reason,
            "time": self.at,
        }


class NackLog:
    def __init__(self) -> None:
        self._rejected: set[tuple[str, str, str]] = set()
        self.recent: list[Nack] = []
        self.total = 0
        self.by_type: dict[str, int] = {}

    def record(
        self, node_id: str, group: str, type_url: str, version: str, last_good: str, reason: str
    ) -> None:
        nack = Nack(node_id, group, type_url, version, last_good, reason, time.time())
        self._rejected.add((group, type_url, version))
        self.recent.append(nack)
        del self.recent[:-_KEEP]
        self.total += 1
        self.by_type[type_url] = self.by_type.get(type_url, 0) + 1
        log.warning(
            "NACK from node %r (group %r) for %s version %s (keeps %r): %s",
            node_id,
            group,
            type_url.rpartition(".")[2],
            version,
            last_good,
            reason,
        )

    def is_rejected(self, group: str, type_url: str, version: str) -> bool:
        return (group, type_url, version) in self._rejected
