"""An immutable set of xDS resources for one node (or node group), with their versions.

Everything a push needs is computed once, when the snapshot is built: each resource's
deterministic version and its encoded form for both protocol variants, and each type's version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf import any_pb2
from google.protobuf.message import Message

from remora.xds import types, wire
from remora.xds.version import resource_version, set_version


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    type_url: str
    version: str
    message: Message
    sotw_field: bytes  # DiscoveryResponse.resources entry (an Any)
    delta_field: bytes  # DeltaDiscoveryResponse.resources entry (a discovery Resource)

    @classmethod
    def of(cls, message: Message) -> Resource:
        packed = any_pb2.Any()
        packed.Pack(message)
        body = packed.SerializeToString(deterministic=True)
        name = types.resource_name(message)
        version = resource_version(message)
        delta = b"".join(
            (
                wire.text(wire.RESOURCE_VERSION, version),
                wire.field(wire.RESOURCE_BODY, body),
                wire.text(wire.RESOURCE_NAME, name),
            )
        )
        return cls(
            name=name,
            type_url=packed.type_url,
            version=version,
            message=message,
            sotw_field=wire.field(wire.SOTW_RESOURCES, body),
            delta_field=wire.field(wire.DELTA_RESOURCES, delta),
        )


class DuplicateResource(ValueError):
    pass


class Snapshot:
    """Resources by type URL and name. `label` (e.g. a git commit) is for logs and admin only."""

    __slots__ = ("_resources", "_versions", "label")

    def __init__(self, resources: Mapping[str, Mapping[str, Resource]], label: str = "") -> None:
        self._resources = {t: dict(r) for t, r in resources.items()}
        self._versions = {
            t: set_version((n, r.version) for n, r in items.items())
            for t, items in self._resources.items()
        }
        self.label = label

    @classmethod
    def build(cls, messages: Iterable[Message], label: str = "") -> Snapshot:
        by_type: dict[str, dict[str, Resource]] = {}
        for message in messages:
            resource = Resource.of(message)
            bucket = by_type.setdefault(resource.type_url, {})
            if resource.name in bucket:
                raise DuplicateResource(
                    f"two {resource.type_url} resources named {resource.name!r}"
                )
            bucket[resource.name] = resource
        return cls(by_type, label)

    def version(self, type_url: str) -> str:
        """The version of a type's full set (what a wildcard subscriber is sent)."""
        return self._versions.get(type_url) or set_version(())

    def resources(self, type_url: str) -> Mapping[str, Resource]:
        return self._resources.get(type_url, {})

    def type_urls(self) -> list[str]:
        return sorted(self._resources)

    def select(self, type_url: str, names: Iterable[str]) -> list[Resource]:
        items = self._resources.get(type_url, {})
        return [items[n] for n in sorted(set(names)) if n in items]

    def versions(self) -> dict[str, str]:
        return {t: self.version(t) for t in self._resources}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self._versions == other._versions

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._versions.items())))
