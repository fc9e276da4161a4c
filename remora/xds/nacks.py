"""What clients rejected, and why: the record behind the admin `/nacks` and the NACK counter.

The memory that stops a NACKed version from being re-pushed is each stream's own (`Rejections`):
a NACK says that one client cannot take that config, not that the config is bad for the others,
and a client must not be able to withhold config from its peers by rejecting it. This is Istio's
rule too: a NACK holds back nothing but the next push to the connection that sent it.

Everything here is bounded: a client chooses the reason, its node id and the type URL, so each is
clipped before it is kept or logged, and only the most recent NACKs are kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from remora.xds.clip import clip

log = logging.getLogger("remora.xds.nack")

_KEEP = 256  # most recent NACKs kept for the admin endpoint
# Envoy's own NACK messages are a line or a few per rejected resource.
REASON_LIMIT = 1024
ID_LIMIT = 128
# Versions remembered per stream and type: enough for any run of rejected pushes in a row.
_REJECTIONS_KEPT = 64


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
        self.recent: list[Nack] = []
        self.total = 0

    def record(
        self, node_id: str, group: str, type_url: str, version: str, last_good: str, reason: str
    ) -> None:
        nack = Nack(
            clip(node_id, ID_LIMIT),
            clip(group, ID_LIMIT),
            type_url,  # a type the stream serves: the server ignores requests for any other
            version,
            clip(last_good, ID_LIMIT),
            clip(reason, REASON_LIMIT),
            time.time(),
        )
        self.recent.append(nack)
        del self.recent[:-_KEEP]
        self.total += 1
        log.warning(
            "NACK from node %r (group %r) for %s version %s (keeps %r): %s",
            nack.node_id,
            nack.group,
            type_url.rpartition(".")[2],
            version,
            nack.last_good,
            nack.reason,
        )


class Rejections:
    """One stream's NACKed versions per type, which that stream is not sent again.

    Versions are content hashes, so a rejected config reaches the client again only once it has
    changed; go-control-plane, by contrast, resends a rejected snapshot forever.
    """

    def __init__(self) -> None:
        self._versions: dict[str, dict[str, None]] = {}  # type -> versions, oldest first

    def add(self, type_url: str, version: str) -> None:
        versions = self._versions.setdefault(type_url, {})
        versions[version] = None
        while len(versions) > _REJECTIONS_KEPT:
            del versions[next(iter(versions))]

    def __contains__(self, key: tuple[str, str]) -> bool:
        type_url, version = key
        return version in self._versions.get(type_url, ())
