"""The snapshot cache: which resources each node is served, and who to tell when that changes.

Nodes are grouped by a key function. The default groups by `node.metadata["remora.group"]` when
set, else by node id. A group without a snapshot of its own is served its parent's: `a/b` falls
back to `a` (the mesh's `sidecar/<service>` groups, which exist only for services with an
inbound side), and anything to the snapshot set for the key `DEFAULT`. Setting a snapshot equal
to the current one (same type versions) notifies nobody.
"""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.core.v3 import base_pb2

from remora.xds.nacks import NackLog
from remora.xds.snapshot import Snapshot

DEFAULT = "*"
GROUP_METADATA_KEY = "remora.group"

Watcher = Callable[[], None]


def node_group(node: base_pb2.Node) -> str:
    fields = node.metadata.fields
    if GROUP_METADATA_KEY in fields and fields[GROUP_METADATA_KEY].string_value:
        return str(fields[GROUP_METADATA_KEY].string_value)
    return str(node.id)


class SnapshotCache:
    def __init__(self, group: Callable[[base_pb2.Node], str] = node_group) -> None:
        self.group = group
        self.nacks = NackLog()
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, set[Watcher]] = {}

    def get(self, key: str) -> Snapshot | None:
        serving = self._serving(key)
        return None if serving is None else self._snapshots[serving]

    def _serving(self, key: str) -> str | None:
        """The key whose snapshot serves group `key`."""
        while True:
            if key in self._snapshots:
                return key
            parent, sep, _ = key.rpartition("/")
            if not sep:
                return DEFAULT if DEFAULT in self._snapshots else None
            key = parent

    def set_snapshot(self, key: str, snapshot: Snapshot) -> bool:
        """Install `snapshot` for group `key`; returns whether anything changed (and was pushed)."""
        current = self._snapshots.get(key)
        if current is not None and current == snapshot:
            if snapshot.label != current.label:
                self._snapshots[key] = snapshot  # same content, newer provenance
            return False
        self._snapshots[key] = snapshot
        targets = [w for k, ws in self._watchers.items() if self._serving(k) == key for w in ws]
        for watcher in targets:
            watcher()
        return True

    def clear(self, key: str) -> None:
        """Drop group `key`'s own snapshot: its nodes are served what it falls back to now, and
        are told so."""
        if key not in self._snapshots:
            return
        served = [w for k, ws in self._watchers.items() if self._serving(k) == key for w in ws]
        del self._snapshots[key]
        for watcher in served:
            watcher()

    def snapshots(self) -> dict[str, Snapshot]:
        return dict(self._snapshots)

    def watch(self, key: str, watcher: Watcher) -> Callable[[], None]:
        """Call `watcher` when the snapshot serving `key` changes; returns a cancel function."""
        self._watchers.setdefault(key, set()).add(watcher)

        def cancel() -> None:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[key]

        return cancel
